"""The Equilibrium Aggregation layer: `y*(X) = argmin_y E_θ(X, y)`."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

import solvers

from ._checks import check_mask, check_segment_range, check_segments, check_set
from .energies import AbstractEnergy


class EquilibriumAggregation(eqx.Module):
    """Pool a set into the minimiser of an energy (Bartunov et al., 2022, eq. 3).

    `y*(X) = argmin_y R(y) + Σ_i F(x_i, y)`, found by the solver's forward method (Nesterov
    steps from `y0 = 0` for learned energies); the solver's backend decides how gradients
    flow through the argmin, so two layers of one model may use different backends.

    **Arguments:**

    - `energy`: an [`eqx_agg.energies.AbstractEnergy`][].
    - `solver`: a backend from [`solvers`][]. Default: the energy's `default_solver()`, the
      paper's `solvers.Unrolled(steps=10)` for learned energies and, for the analytic ones
      (`Mean`, `Sum`, `Median`, `Max`, `Attention`), an `Implicit` backend over
      [`solvers.CoordinateNewton`][] that returns their pooling at any set size and scale.

    Shapes: `x: [n, d]`, `mask: [n]` (False rows are ignored), output `[k]` where `k` is
    the energy's aggregate size (its readout's size for `Attention`). A batch of sets is
    `jax.vmap(layer)`; many sets stored together (graph readout) is `layer.segments`.
    """

    energy: AbstractEnergy
    solver: solvers.AbstractBackend

    def __init__(self, energy: AbstractEnergy, solver: solvers.AbstractBackend | None = None):
        solver = energy.default_solver() if solver is None else solver
        if solver.separable_only and not energy.separable:
            raise ValueError(
                f"{type(energy).__name__} is not separable (a sum of one term per coordinate "
                f"of y), which this solver's method or linear solver needs: {solver}"
            )
        self.energy = energy
        self.solver = solver

    def __call__(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> Float[Array, " k"]:
        """The aggregate of one set: `x: [n, d]`, `mask: [n]` → `[k]`."""
        return self.solve(x, mask).value

    def solve(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> solvers.Solution:
        """Like `__call__`, returning a [`solvers.Solution`][] whose stats are scalars."""
        x = jnp.asarray(x)
        n = _check_elements(x, self.energy)
        sol = self.solve_segments(x, jnp.zeros(n, jnp.int32), 1, mask)
        return jax.tree_util.tree_map(lambda a: a[0], sol)

    def segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> Float[Array, "s k"]:
        """Aggregate many sets stored together: element `i` belongs to set `segment_ids[i]`.

        All sets are solved in one iteration (each stops at its own tolerance), gradients stay
        per set. `x: [n, d]`, `segment_ids: [n]` ints in `[0, num_segments)` (others raise),
        `mask: [n]` → `[num_segments, k]`; an empty set gives the aggregate of `y0 = 0`.
        """
        return self.solve_segments(x, segment_ids, num_segments, mask).value

    @eqx.filter_jit
    def solve_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> solvers.Solution:
        """Like `segments`, returning a [`solvers.Solution`][] with per-set stats `[s]`."""
        x = jnp.asarray(x)
        _check_elements(x, self.energy)
        check_segments(segment_ids, num_segments, x)
        mask = check_mask(mask, x)
        segment_ids = check_segment_range(jnp.asarray(segment_ids), num_segments, mask)
        if self.solver.throw:
            x = eqx.error_if(
                x,
                jnp.any(mask[:, None] & ~jnp.isfinite(x)),
                "EquilibriumAggregation got NaN or inf in an unmasked row of x",
            )
        x = jnp.where(mask[:, None], x, 0)
        m = self.energy.aggregate_size(x.shape[1])
        y0 = jnp.zeros((num_segments, m), jnp.result_type(x.dtype, jnp.float32))
        elements = self.energy.prepare(x, segment_ids, num_segments, mask)
        bounds = self.energy.bounds(x, segment_ids, num_segments, mask)
        args = (self.energy, elements, segment_ids, mask)
        sol = self.solver.solve(_energies, y0, args, bounds)
        value = jax.vmap(self.energy.readout)(sol.value)
        return solvers.Solution(value=value, stats=sol.stats)


def _energies(y, args):
    energy, elements, segment_ids, mask = args
    return energy.prepared_energies(elements, y, segment_ids, mask)


def _check_elements(x: Array, energy: AbstractEnergy) -> int:
    n = check_set(x)
    energy.aggregate_size(x.shape[1])  # raises on a size the energy cannot take
    return n
