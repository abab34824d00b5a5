"""The result type every backend returns."""

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class Stats(eqx.Module):
    """Diagnostics of one inner solve, one entry per set (leading axis `b`).

    - `grad_max_norm`: `max_d |∂E/∂y_d|` at the returned `y` (paper Fig. 5), shape `[b]`.
    - `aux_loss`: eq. 5, the mean over steps of `||∇_y E||²` at the points the method
      evaluated (Nesterov's look-ahead points, as Listing 2 does), shape `[b]`.
      Differentiable only through the steps the backend keeps a tape for. An EA layer with
      a `contraction_weight` adds its contraction penalty here.
    - `energy`: `E(X, y)` at the returned `y`, shape `[b]`.
    - `num_steps`: steps that moved the set (a set stops once it meets the method's
      tolerance, or diverges), `[b]`.
    - `converged`: the returned `y` meets the method's tolerance (for Nesterov,
      `grad_max_norm < gtol`), `[b]`.
    - `diverged`: `y` or its gradient is non-finite, or the gradient grew past
      [`solvers.DIVERGENCE_RATIO`][] times its first value, `[b]`.
    - `grad_max_norm_history`, `energy_history`: the same quantities at every step's
      evaluation point, shape `[b, steps]` (a stopped set repeats its last values).

    `grad_max_norm`, `energy` and the gradient's share of `converged` and `diverged` need one
    gradient evaluation at the returned `y` beyond the method's steps; under `jit` XLA makes
    it only when they are read. `throw=True` checks divergence and (Implicit) convergence from
    the steps' own records instead, so it costs nothing extra.

    The backward linear solve of [`solvers.Implicit`][] happens after the forward, so its
    diagnostics are not here: it raises on failure, or reports through `report=`.
    """

    grad_max_norm: Float[Array, " b"]
    aux_loss: Float[Array, " b"]
    energy: Float[Array, " b"]
    num_steps: Int[Array, " b"]
    converged: Bool[Array, " b"]
    diverged: Bool[Array, " b"]
    grad_max_norm_history: Float[Array, "b steps"]
    energy_history: Float[Array, "b steps"]


class Solution(eqx.Module):
    """`value`: the aggregate `y` (shape `[b, m]` from a backend, `[m]` from a layer);
    `stats`: a [`solvers.Stats`][]."""

    value: Float[Array, "..."]
    stats: Stats
