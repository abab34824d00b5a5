"""Batch normalisation over the real rows of a padded batch."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


class MaskedBatchNorm(eqx.Module):
    """Batch norm whose statistics use only the rows where `mask` is True.

    Padding nodes of a padded `jraph.GraphsTuple` therefore change neither the batch
    statistics nor the running averages, so they never change a real graph's output (a plain
    `eqx.nn.BatchNorm` would count them). Training mode normalises by the batch's mean and
    biased variance and updates the running averages (PyTorch's convention: unbiased
    variance, `running ← (1 - momentum)·running + momentum·batch`); inference mode uses the
    running averages.

    **Arguments:**

    - `size`: feature width `d`.
    - `momentum`: running-average update rate (PyTorch's default 0.1).
    - `eps`: added to the variance.

    Build the model with `eqx.nn.make_with_state` to get the initial `eqx.nn.State`.
    """

    weight: Float[Array, " d"]
    bias: Float[Array, " d"]
    state_index: eqx.nn.StateIndex
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, momentum: float = 0.1, eps: float = 1e-5):
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.weight = jnp.ones(size)
        self.bias = jnp.zeros(size)
        self.state_index = eqx.nn.StateIndex((jnp.zeros(size), jnp.ones(size)))
        self.momentum = momentum
        self.eps = eps

    def __call__(
        self,
        x: Float[Array, "n d"],
        mask: Bool[Array, " n"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "n d"], eqx.nn.State]:
        """Normalise `x: [n, d]` with statistics of the rows where `mask: [n]`; returns the
        normalised `[n, d]` and the updated state (unchanged in inference mode)."""
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0] or mask.shape != x.shape[:1]:
            raise ValueError(
                f"x must have shape [n, {self.weight.shape[0]}] and mask shape [n], got "
                f"x of shape {x.shape} and mask of shape {mask.shape}"
            )
        running_mean, running_var = state.get(self.state_index)
        if inference:
            mean, var = running_mean, running_var
        else:
            weights = mask.astype(x.dtype)[:, None]
            count = jnp.sum(weights)
            mean = jnp.sum(weights * x, axis=0) / jnp.maximum(count, 1)
            var = jnp.sum(weights * (x - mean) ** 2, axis=0) / jnp.maximum(count, 1)
            unbiased = var * count / jnp.maximum(count - 1, 1)
            new_mean = (1 - self.momentum) * running_mean + self.momentum * mean
            new_var = (1 - self.momentum) * running_var + self.momentum * unbiased
            state = state.set(
                self.state_index,
                (new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)),
            )
        out = (x - mean) / jnp.sqrt(var + self.eps) * self.weight + self.bias
        return jnp.where(mask[:, None], out, 0), state
