"""The loops that run a forward method: taped, checkpointed, or to tolerance without a tape."""

from typing import Any

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp

from .._problem import RECORD_KEYS, EnergyFn
from ..methods import AbstractMethod


def scan_steps(method: AbstractMethod, fn: EnergyFn, state, args: Any, steps: int):
    """`steps` method steps under `lax.scan` (reverse-differentiable: every step is taped)."""

    def body(state, _):
        return method.step(fn, state, args)

    state, history = jax.lax.scan(body, state, None, length=steps)
    return state, {name: h.T for name, h in history.items()}


def checkpointed_steps(
    method: AbstractMethod, fn: EnergyFn, state, args: Any, steps: int, checkpoints: int | None
):
    """`steps` method steps, reverse-differentiable with `checkpoints` stored states (default
    `√steps`): the backward pass recomputes the steps between checkpoints (Equinox's
    checkpointed scan), so the same values and gradients as `scan_steps` in less memory."""

    def body(state, _):
        return method.step(fn, state, args)

    state, history = eqxi.scan(
        body, state, None, length=steps, kind="checkpointed", checkpoints=checkpoints
    )
    return state, {name: h.T for name, h in history.items()}


def steps_to_tolerance(method: AbstractMethod, fn: EnergyFn, state, args: Any, steps: int):
    """At most `steps` method steps under `lax.while_loop`, stopping once every set has stopped.

    Not reverse-differentiable (nothing is taped). The records of the steps skipped after the
    loop ends repeat each set's last record, as a stopped set's records would.
    """
    b = state.stopped.shape[0]
    dtype = state.y.dtype
    empty = {
        name: jnp.zeros((steps, b), bool if name == "active" else dtype) for name in RECORD_KEYS
    }

    def cond(carry):
        t, state, _ = carry
        return (t < steps) & ~jnp.all(state.stopped)

    def body(carry):
        t, state, history = carry
        state, rec = method.step(fn, state, args)
        history = {name: history[name].at[t].set(rec[name]) for name in RECORD_KEYS}
        return t + 1, state, history

    t, state, history = jax.lax.while_loop(cond, body, (0, state, empty))
    ran = (jnp.arange(steps) < t)[:, None]
    last = {name: h[jnp.maximum(t - 1, 0)] for name, h in history.items()}
    filled = {
        name: jnp.where(ran, h, False if name == "active" else last[name][None])
        for name, h in history.items()
    }
    return state, {name: h.T for name, h in filled.items()}


def stop_gradient(tree):
    """`lax.stop_gradient` on the floating-point arrays of a pytree; other leaves unchanged."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.lax.stop_gradient(leaf) if eqx.is_inexact_array(leaf) else leaf, tree
    )
