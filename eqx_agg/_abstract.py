"""The interface every aggregation shares: EA, the transport layers and the baseline poolings."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Scalar

import solvers

from ._checks import (
    check_backend,
    check_mask,
    check_segment_range,
    check_segments,
    check_set,
    floating_dtype,
)


class AbstractAggregation(eqx.Module):
    """A set aggregation: `[n, d]` elements (rows where `mask` is False ignored) → `[k]`.

    Every aggregation returns its value and an auxiliary loss per set, so a model treats
    them alike: EA's auxiliary loss is eq. 5 (the mean squared optimality residual over the
    inner steps; plus its contraction penalty, if it has a `contraction_weight`), the
    transport layers' the same for their marginal conditions, and a
    closed-form pooling's zero. Add `aux_weight · aux` to the task loss to encourage
    convergence.

    - `pool(x, mask=None) -> [k]`; `pool.aggregate(x, mask=None) -> ([k], aux)`;
    - `pool.segments(x, segment_ids, num_segments, mask=None) -> [s, k]` for many sets
      stored together (element `i` in set `segment_ids[i]`), and
      `pool.aggregate_segments(...) -> ([s, k], aux [s])`.

    Subclass this with `output_size` and `aggregate_segments` to add an aggregation.
    """

    @abc.abstractmethod
    def output_size(self, in_size: int) -> int:
        """Size `k` of the aggregate of elements of size `in_size`; raises `ValueError` if the
        aggregation cannot take elements of that size."""

    @abc.abstractmethod
    def aggregate_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> tuple[Float[Array, "s k"], Float[Array, " s"]]:
        """The aggregate of every set and its auxiliary loss, `([s, k], [s])`."""

    def aggregate(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> tuple[Float[Array, " k"], Scalar]:
        """The aggregate of one set and its auxiliary loss."""
        x = jnp.asarray(x)
        n = check_set(x)
        values, aux = self.aggregate_segments(x, jnp.zeros(n, jnp.int32), 1, mask)
        return values[0], aux[0]

    def __call__(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> Float[Array, " k"]:
        """The aggregate of one set: `x: [n, d]`, `mask: [n]` → `[k]`."""
        return self.aggregate(x, mask)[0]

    def segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> Float[Array, "s k"]:
        """Aggregate many sets stored together: element `i` belongs to set `segment_ids[i]`
        (ints in `[0, num_segments)`; others raise). `[n, d]` → `[num_segments, k]`; an empty
        set aggregates to zeros (EA: to the readout of `y0 = 0`)."""
        return self.aggregate_segments(x, segment_ids, num_segments, mask)[0]


class AbstractSolvedAggregation(AbstractAggregation):
    """An aggregation computed by a solver from [`solvers`][] (EA, OTKE, ROTP): subclasses
    define `solve_segments`, which returns a [`solvers.Solution`][] with `value: [s, k]` and
    per-set stats, and `default_method`, the forward method of a backend given without one;
    the aggregate, its auxiliary loss (`stats.aux_loss`) and `solve` for one set follow."""

    solver: eqx.AbstractVar[solvers.AbstractBackend]

    @abc.abstractmethod
    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        """The forward method this layer runs under a backend built without `method=`, for a
        backend that runs to tolerance or one that differentiates a `T`-step procedure."""

    def with_solver(self, solver: solvers.AbstractBackend) -> "AbstractSolvedAggregation":
        """This layer with `solver` as its backend, every other parameter kept; a backend
        built without `method=` gets the layer's default method (fresh learned parameters)."""
        solver = bind_solver(solver, self.default_method)
        return eqx.tree_at(lambda m: m.solver, self, solver)

    def bound_solver(self) -> solvers.AbstractBackend:
        """`solver`, with the layer's default forward method if it has none (a layer binds
        it when built; this covers a backend swapped in with `eqx.tree_at`)."""
        if self.solver.method is not None:
            return self.solver
        return self.solver.with_method(self.default_method(self.solver.runs_to_tolerance))

    @abc.abstractmethod
    def solve_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> solvers.Solution:
        """Solve every set stored together: `value: [s, k]`, stats `[s]`."""

    def _checked_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None,
    ) -> tuple[Float[Array, "n d"], Int[Array, " n"], Bool[Array, " n"]]:
        """The inputs of `solve_segments`, validated: `[n, d]` with a size the layer takes,
        segment ids in range, a `[n]` mask, and (with `solver.throw`) no NaN or inf in an
        unmasked row; returns `(x, segment_ids, mask)` with the masked rows of `x` zeroed and
        `x` cast to the layer's floating-point dtype (its parameters')."""
        x = jnp.asarray(x)
        check_set(x)
        x = x.astype(floating_dtype(self, x))
        self.output_size(x.shape[1])  # raises on a size the layer cannot take
        check_segments(segment_ids, num_segments, x)
        mask = check_mask(mask, x)
        segment_ids = check_segment_range(jnp.asarray(segment_ids), num_segments, mask)
        if self.solver.throw:
            x = eqx.error_if(
                x,
                jnp.any(mask[:, None] & ~jnp.isfinite(x)),
                f"{type(self).__name__} got NaN or inf in an unmasked row of x",
            )
        return jnp.where(mask[:, None], x, 0), segment_ids, mask

    def solve(
        self, x: Float[ArrayLike, "n d"], mask: Bool[ArrayLike, " n"] | None = None
    ) -> solvers.Solution:
        """The aggregate of one set with the solve's stats (scalars): `grad_max_norm` is the
        final optimality residual, `converged`, `diverged`, `num_steps`, `aux_loss`."""
        x = jnp.asarray(x)
        n = check_set(x)
        sol = self.solve_segments(x, jnp.zeros(n, jnp.int32), 1, mask)
        return jax.tree_util.tree_map(lambda a: a[0], sol)

    def aggregate_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> tuple[Float[Array, "s k"], Float[Array, " s"]]:
        sol = self.solve_segments(x, segment_ids, num_segments, mask)
        return sol.value, sol.stats.aux_loss


def bind_solver(
    solver: object, default_method: Callable[[bool], solvers.AbstractMethod]
) -> solvers.AbstractBackend:
    """`solver` checked to be a backend, with `default_method(solver.runs_to_tolerance)` as
    its forward method when it was built without one (the layer's learnable parameters then
    live in it)."""
    solver = check_backend(solver)
    if solver.method is None:
        solver = solver.with_method(default_method(solver.runs_to_tolerance))
    return solver
