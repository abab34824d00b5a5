"""A layer on one batch under one backend, compiled once: its gradient, its step time and a
short training run, measured by the same compiled training step."""

import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float

import solvers

from ._abstract import AbstractSolvedAggregation


def probe_displacement(output: Float[Array, "b k"], key: Array) -> Float[Array, "b k"]:
    """What the training probe asks of the layer: move each set's `output` by this, one
    standard deviation of that output coordinate across the batch in a random direction (one
    unit where the batch does not spread), so fitting it needs each set's content."""
    spread = jnp.std(output, axis=0)
    spread = jnp.where(spread > 0, spread, 1.0)  # NaN compares false: one unit too
    return spread * jax.random.normal(key, output.shape, output.dtype)


class TrainingProbe:
    """`layer` with `solver` on the batch `x` (`mask`), trained with Adam (rate `lr`) to
    move its initial outputs by a displacement (mean squared error), as training would:
    every inexact array, the forward method's learned step size included. One compiled
    step serves every measurement; it also returns the gradient w.r.t. `x` (what an encoder
    before the layer receives).

    Attributes: `output` `[b, k]` the initial outputs; `residual` the forward's largest
    `max|∇_y E|` on the batch; `megabytes` the compiled step's memory (temporaries,
    arguments, outputs).
    """

    def __init__(
        self,
        layer: AbstractSolvedAggregation,
        solver: solvers.AbstractBackend,
        x: Float[Array, "b n d"],
        mask: Bool[Array, "b n"] | None,
        lr: float,
    ):
        candidate = eqx.tree_at(lambda m: m.solver, layer, solver)
        self._params, static = eqx.partition(candidate, eqx.is_inexact_array)
        self._x = x
        optimizer = optax.adam(lr)

        def loss(params, x, target):
            solution = jax.vmap(eqx.combine(params, static).solve)(x, mask)
            residual = jnp.max(solution.stats.grad_max_norm)
            return jnp.mean((solution.value - target) ** 2), (solution.value, residual)

        def step(params, opt_state, x, target):
            (value, aux), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x, target)
            updates, opt_state = optimizer.update(grads[0], opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value, grads, aux

        self._opt_state = optimizer.init(self._params)
        output = jax.eval_shape(jax.vmap(candidate), x, mask)
        output = jnp.zeros(output.shape, output.dtype)
        self._step = jax.jit(step).lower(self._params, self._opt_state, x, output).compile()
        memory = self._step.memory_analysis()
        total = memory.temp_size_in_bytes + memory.argument_size_in_bytes
        self.megabytes = (total + memory.output_size_in_bytes) / 1e6
        *_, (self.output, residual) = self._step(self._params, self._opt_state, x, output)
        self.residual = float(residual)

    def gradient_and_ms(
        self, displacement: Float[Array, "b k"], repeats: int
    ) -> tuple[np.ndarray, float]:
        """The first step's gradient w.r.t. the parameters outside the solver and `x`, flat
        (the gradient of the linear functional `−2/size · <displacement, outputs>`), and the
        median milliseconds of that step and `repeats` more."""
        target = self.output + displacement
        times = []
        for _ in range(1 + repeats):
            start = time.perf_counter()
            result = self._step(self._params, self._opt_state, self._x, target)
            jax.block_until_ready(result)
            times.append(time.perf_counter() - start)
        grads, x_grad = result[3]
        theta = eqx.filter(eqx.tree_at(lambda g: g.solver, grads, None), eqx.is_array)
        return np.asarray(ravel_pytree((theta, x_grad))[0]), 1e3 * statistics.median(times)

    def train(
        self, displacement: Float[Array, "b k"], steps: int, max_seconds: float = float("inf")
    ) -> dict[str, list[float]]:
        """Train from the initial parameters for `steps` steps, or until they have taken
        `max_seconds` of training time (at least one step).

        **Returns:** `{"losses": [...], "seconds": [...]}`: the loss after each number of
        steps, from none, and the training wall-clock until then (0 first), compilation
        excluded.
        """
        target = self.output + displacement
        params, opt_state = self._params, self._opt_state
        losses, seconds, clock = [], [0.0], 0.0
        while len(losses) < steps and (not losses or clock < max_seconds):
            start = time.perf_counter()
            params, opt_state, value, _, _ = self._step(params, opt_state, self._x, target)
            losses.append(float(value))  # the loss before this step; blocks until it is done
            clock += time.perf_counter() - start
            seconds.append(clock)
        *_, value, _, _ = self._step(params, opt_state, self._x, target)  # after the last
        return {"losses": [*losses, float(value)], "seconds": seconds}
