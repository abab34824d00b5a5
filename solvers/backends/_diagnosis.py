"""Loud failures that say what went wrong and what to do: which sets, their residual, and
whether more steps would help."""

import sys

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from ..methods import AbstractMethod

SHOWN_SETS = 8
"""At most this many failing sets are listed."""

THROW_FALSE = (
    "Pass throw=False to the solver to proceed and read Solution.stats (converged, "
    "grad_max_norm, grad_max_norm_history) instead."
)


def still_falling(history: Float[Array, "b steps"]) -> Bool[Array, " b"]:
    """Whether each set's residual was still falling: the second half of the run reached a
    residual below 0.9 times the first half's lowest (else it was flat, oscillating without
    progress, or growing; a run of one step counts as falling: more steps is the only advice
    it supports)."""
    if history.shape[1] < 2:
        return jnp.ones(history.shape[0], bool)
    half = _middle(history) + 1
    return jnp.min(history[:, half:], axis=1) < 0.9 * jnp.min(history[:, :half], axis=1)


def _middle(history) -> int:
    return (history.shape[1] - 1) // 2


def raise_if_not_converged(
    y: Array,
    failed: Bool[Array, " b"],
    history: Float[Array, "b steps"],
    method: AbstractMethod,
    needs: str,
) -> Array:
    """`y`, raising when any set `failed` to converge: the message says whether the residual
    was still falling (raise steps) or not (the method's `stall_advice`), and the failing
    sets with their residuals are printed to stderr."""
    name = type(method).__name__
    tolerance = f"tolerance {method.tolerance:g}" if method.tolerance else "its tolerance"
    start = (
        f"{needs}, and its forward method {name} did not reach its tolerance ({tolerance}) "
        f"within `steps` for some sets (listed above with their residual). "
    )
    messages = (
        start
        + f"Their residual was still falling when the steps ran out: {method.slow_advice}. "
        + THROW_FALSE,
        start + "Their residual stopped falling (flat, oscillating or growing), so more steps "
        f"will not help: {method.stall_advice}. " + THROW_FALSE,
    )
    falling = still_falling(history)
    index = jnp.where(jnp.any(failed & ~falling), 1, 0)
    _print_failures(failed, history[:, -1], history[:, _middle(history)], falling)
    return eqx.branched_error_if(y, jnp.any(failed), index, messages)


def raise_if_diverged(y: Array, diverged: Bool[Array, " b"], method: AbstractMethod) -> Array:
    """`y`, raising when any set diverged."""
    message = (
        f"The inner optimisation ({type(method).__name__}) diverged: non-finite values, or a "
        f"gradient growing past DIVERGENCE_RATIO times its first value. To fix it: "
        f"{method.stall_advice}. " + THROW_FALSE
    )
    return eqx.error_if(y, jnp.any(diverged), message)


def _print_failures(failed, last, middle, falling) -> None:
    """Print each failing set's residual and trend to stderr, only when a set failed."""

    def show(failed, last, middle, falling):
        failed, last, middle, falling = (np.asarray(a) for a in (failed, last, middle, falling))
        # under vmap the arrays gain leading batch axes: one line per failing set
        rows = np.argwhere(failed)
        lines = [
            f"  set {tuple(int(i) for i in index) if len(index) > 1 else int(index[0])}: "
            f"residual {last[tuple(index)]:.3g} (halfway {middle[tuple(index)]:.3g}: "
            f"{'still falling' if falling[tuple(index)] else 'not falling'})"
            for index in rows[:SHOWN_SETS]
        ]
        more = f"\n  ... and {len(rows) - SHOWN_SETS} more" if len(rows) > SHOWN_SETS else ""
        print(
            f"solvers: {len(rows)} set(s) did not converge:\n" + "\n".join(lines) + more,
            file=sys.stderr,
            flush=True,
        )

    def report():
        jax.debug.callback(show, failed, last, middle, falling)

    jax.lax.cond(eqxi.unvmap_any(jnp.any(failed)), report, lambda: None)
