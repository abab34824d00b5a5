"""A short training run of a layer on one batch: how fast a backend makes training progress."""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float

import solvers

from ._abstract import AbstractSolvedAggregation


def probe_displacement(
    layer: AbstractSolvedAggregation,
    x: Float[Array, "b n d"],
    mask: Bool[Array, "b n"] | None,
    key: Array,
) -> Float[Array, "b k"]:
    """What `training_probe` asks of the layer: move each set's output by this, one standard
    deviation of that output coordinate across the batch in a random direction (one unit
    where the batch does not spread), so fitting it needs each set's content."""
    out = jax.vmap(layer)(x, mask)
    spread = jnp.std(out, axis=0)
    spread = jnp.where(spread > 0, spread, 1.0)
    return spread * jax.random.normal(key, out.shape, out.dtype)


def training_probe(
    layer: AbstractSolvedAggregation,
    solver: solvers.AbstractBackend,
    x: Float[Array, "b n d"],
    mask: Bool[Array, "b n"] | None,
    displacement: Float[Array, "b k"],
    steps: int,
    lr: float,
) -> dict[str, list[float]]:
    """Train `layer` with `solver` for `steps` Adam steps (learning rate `lr`) to move its
    initial outputs on the batch `x` by `displacement` (mean squared error), as training
    would: every inexact array, the forward method's learned step size included. Every
    solver starts from the same loss, whatever its initial outputs.

    **Returns:** `{"losses": [...], "seconds": [...]}`: the loss before each step, and the
    wall-clock after it, cumulative, compilation excluded.
    """
    candidate = eqx.tree_at(lambda m: m.solver, layer, solver)
    target = jax.vmap(candidate)(x, mask) + displacement
    params, static = eqx.partition(candidate, eqx.is_inexact_array)
    optimizer = optax.adam(lr)

    def loss(params):
        out = jax.vmap(eqx.combine(params, static))(x, mask)
        return jnp.mean((out - target) ** 2)

    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = optimizer.init(params)
    compiled = jax.jit(step).lower(params, opt_state).compile()
    losses, seconds, clock = [], [], 0.0
    for _ in range(steps):
        start = time.perf_counter()
        params, opt_state, value = compiled(params, opt_state)
        losses.append(float(value))  # blocks until the step is done
        clock += time.perf_counter() - start
        seconds.append(clock)
    return {"losses": losses, "seconds": seconds}
