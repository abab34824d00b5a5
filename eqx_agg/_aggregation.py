"""The Equilibrium Aggregation layer: `y*(X) = argmin_y E_θ(X, y)`."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Bool, Float, Int

import solvers

from ._abstract import AbstractSolvedAggregation, bind_solver
from .energies import AbstractEnergy


class EquilibriumAggregation(AbstractSolvedAggregation):
    """Pool a set into the minimiser of an energy (Bartunov et al., 2022, eq. 3).

    `y*(X) = argmin_y R(y) + Σ_i F(x_i, y)`, found from `y0 = 0` by the solver's forward
    method (below); the solver's backend decides how gradients flow through the argmin, so
    two layers of one model may use different backends.

    **Arguments:**

    - `energy`: an [`eqx_agg.energies.AbstractEnergy`][].
    - `solver`: a backend from [`solvers`][]. Default: the energy's `default_solver()`, the
      paper's `solvers.Unrolled(steps=10)` for learned energies and, for separable ones
      (`Mean`, `Sum`, `Median`, `Max`, `Attention`, or yours declaring `separable = True`),
      an `Implicit` backend over [`solvers.CoordinateNewton`][] that returns their pooling
      at any set size and scale. A backend built without `method=` runs the energy's
      `default_method`: the paper's Nesterov (learnable lr and momentum, stored in the
      layer) under Unrolled, Checkpointed and Truncated; `solvers.Newton()` under Implicit
      and Phantom; CoordinateNewton for a separable energy.

    Shapes: `x: [n, d]`, `mask: [n]` (False rows are ignored), output `[k]` where `k` is
    the energy's aggregate size (its readout's size for `Attention`). A batch of sets is
    `jax.vmap(layer)`; many sets stored together (graph readout) is `layer.segments`. As
    every [`eqx_agg.AbstractAggregation`][], `layer.aggregate(x, mask)` also returns the
    auxiliary loss of eq. 5.
    """

    energy: AbstractEnergy
    solver: solvers.AbstractBackend

    def __init__(self, energy: AbstractEnergy, solver: solvers.AbstractBackend | None = None):
        if not isinstance(energy, AbstractEnergy):
            raise TypeError(
                f"energy must be an eqx_agg.energies.AbstractEnergy (e.g. energies.Mean() or "
                f"energies.Neural(in_size, out_size, key=key)), got {energy!r}"
            )
        solver = bind_solver(
            energy.default_solver() if solver is None else solver, energy.default_method
        )
        method = type(solver.method).__name__
        if solver.method.transport_only:
            raise ValueError(
                f"{method} solves entropic transport problems (the layers OTKE and ROTP), not "
                f"the energy {type(energy).__name__}: use solvers.Nesterov, Newton or Anderson"
            )
        if solver.separable_only and not energy.separable:
            raise ValueError(
                f"{type(energy).__name__} is not separable (a sum of one term per coordinate "
                f"of y), which this solver's method ({method}) or linear solver needs: use "
                f"solvers.Newton or Nesterov, and linear_solver='cg'"
            )
        self.energy = energy
        self.solver = solver

    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        return self.energy.default_method(to_tolerance)

    def output_size(self, in_size: int) -> int:
        m = self.energy.aggregate_size(in_size)
        return jax.eval_shape(self.energy.readout, jnp.zeros(m)).shape[0]

    @eqx.filter_jit
    def solve_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> solvers.Solution:
        """Aggregate many sets stored together (element `i` in set `segment_ids[i]`, ints in
        `[0, num_segments)`), all solved in one iteration, each stopping at its own tolerance,
        gradients per set: a [`solvers.Solution`][] with `value: [s, k]` and per-set stats
        `[s]`. An empty set gives the readout of `y0 = 0`."""
        x, segment_ids, mask = self._checked_segments(x, segment_ids, num_segments, mask)
        m = self.energy.aggregate_size(x.shape[1])
        y0 = jnp.zeros((num_segments, m), x.dtype)
        elements = self.energy.prepare(x, segment_ids, num_segments, mask)
        bounds = self.energy.bounds(x, segment_ids, num_segments, mask)
        args = (self.energy, elements, segment_ids, mask)
        sol = self.bound_solver().solve(_energies, y0, args, bounds)
        value = jax.vmap(self.energy.readout)(sol.value)
        return solvers.Solution(value=value, stats=sol.stats)


def _energies(y, args):
    energy, elements, segment_ids, mask = args
    return energy.prepared_energies(elements, y, segment_ids, mask)
