"""The Equilibrium Aggregation layer: `y*(X) = argmin_y E_θ(X, y)`."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Bool, Float, Int

import solvers

from ._abstract import AbstractSolvedAggregation, bind_solver
from ._contraction_penalty import contraction_penalty
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

    `contraction_weight = w > 0` adds `w ×` [`eqx_agg.contraction_penalty`][] at the
    solver's `y` (before the readout) to that auxiliary loss and to `stats.aux_loss`: a
    Jacobian regulariser that trains the energy so that the forward's gradient steps
    contract, i.e. so that a few steps solve it. It acts only through the auxiliary loss
    you add to your loss (`layer(x)` drops it), so its weight in the loss is your
    `aux_weight × w`. It needs a forward with a step size `lr` (Nesterov, Anderson) and no
    `clip`; `with_contraction_weight(w)` changes it on a built layer.
    """

    energy: AbstractEnergy
    solver: solvers.AbstractBackend
    contraction_weight: float = eqx.field(static=True)

    def __init__(
        self,
        energy: AbstractEnergy,
        solver: solvers.AbstractBackend | None = None,
        *,
        contraction_weight: float = 0.0,
    ):
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
        _check_contraction(contraction_weight, solver)
        self.energy = energy
        self.solver = solver
        self.contraction_weight = float(contraction_weight)

    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        return self.energy.default_method(to_tolerance)

    def with_contraction_weight(self, weight: float) -> "EquilibriumAggregation":
        """This layer (every parameter shared) with the contraction penalty at `weight`."""
        return EquilibriumAggregation(self.energy, self.solver, contraction_weight=weight)

    def with_solver(self, solver: solvers.AbstractBackend) -> "EquilibriumAggregation":
        new = super().with_solver(solver)
        _check_contraction(new.contraction_weight, new.solver)
        return new

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
        solver = self.bound_solver()
        sol = solver.solve(_energies, y0, args, bounds)
        stats = sol.stats
        if self.contraction_weight > 0:
            _check_contraction(self.contraction_weight, solver)  # a solver set by tree_at
            penalty = contraction_penalty(_energies, sol.value, args, solver.method.lr)
            aux_loss = stats.aux_loss + self.contraction_weight * penalty
            stats = eqx.tree_at(lambda s: s.aux_loss, stats, aux_loss)
        value = jax.vmap(self.energy.readout)(sol.value)
        return solvers.Solution(value=value, stats=stats)


def _check_contraction(weight: float, solver: solvers.AbstractBackend) -> None:
    if not weight >= 0:
        raise ValueError(f"contraction_weight must be >= 0, got {weight}")
    method = solver.method
    if weight == 0 or method is None or (hasattr(method, "lr") and not method.constrained):
        return
    why = "is projected (clip)" if hasattr(method, "lr") else "takes no gradient steps"
    raise ValueError(
        f"the contraction penalty (contraction_weight={weight}) measures the forward's "
        f"gradient steps, and {type(method).__name__} {why}: use a solvers.Nesterov or "
        f"Anderson forward without clip (Unrolled, Checkpointed, Truncated, or method=...), "
        f"or drop the penalty with layer.with_contraction_weight(0.0)"
    )


def _energies(y, args):
    energy, elements, segment_ids, mask = args
    return energy.prepared_energies(elements, y, segment_ids, mask)
