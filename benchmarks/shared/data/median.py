"""Median-estimation sets, generated exactly as the paper's appendix D.1."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def median_sets(
    key: PRNGKeyArray, num_sets: int, set_size: int = 100
) -> tuple[Float[Array, "b n 1"], Float[Array, " b"]]:
    """`num_sets` sets of `set_size` numbers and their medians (labels).

    Each set draws one distribution at random, then `set_size` values from it: uniform on
    [0, 1], gamma (shape 0.5, scale 0.2), or normal (mean 0.5, std 0.4).
    """
    k_choice, k_uniform, k_gamma, k_normal = jax.random.split(key, 4)
    shape = (num_sets, set_size)
    uniform = jax.random.uniform(k_uniform, shape)
    gamma = 0.2 * jax.random.gamma(k_gamma, 0.5, shape)
    normal = 0.5 + 0.4 * jax.random.normal(k_normal, shape)
    choice = jax.random.randint(k_choice, (num_sets, 1), 0, 3)
    values = jnp.where(choice == 0, uniform, jnp.where(choice == 1, gamma, normal))
    return values[..., None], jnp.median(values, axis=1)
