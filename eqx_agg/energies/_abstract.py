"""The abstract energy `E(X, y) = R(y) + Σ_i F(x_i, y)`, masked and optionally scaled."""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree, Scalar

import solvers

from .._segments import segment_counts, segment_sum

SCALE_EPS = 1e-8
"""ε of the scaled energy, eq. 13."""


class AbstractEnergy(eqx.Module):
    """An energy over the aggregate `y`: `E(X, y) = R(y) + Σ_i F(x_i, y)` (paper eq. 3).

    Subclasses define the potential `F`, the regulariser `R` and the size of `y`. With
    `scaled` (the default) the energy is eq. 13 of the paper,
    `(R + Σ F) / (N + ε) · log2(N + 1)`, which keeps its gradient's size sublinear in the
    set size `N`. The empty set's energy is `||y||² / 2`, so its argmin is `y0 = 0`, with
    finite gradients under every backend.

    Subclass this (with a `potential`, `regulariser`, `aggregate_size`) to add an energy. The
    other methods are optional hooks for the solver:

    - `prepare` computes, once per solve, what the potential needs of each element (work
      that does not depend on `y`, or statistics of the element's set), and
      `prepared_potential` evaluates `F` from it;
    - `bounds` gives per-set brackets of the minimiser, `separable` says whether `E` is a
      sum of one term per coordinate of `y`, `default_solver` is the backend a layer uses
      when given none, and `default_method` the forward method of a backend given without
      one. Both follow `separable`: declare it and a separable energy gets the analytic
      energies' exact solver.
    """

    scaled: eqx.AbstractVar[bool]
    separable: ClassVar[bool] = False
    """Whether `E` is a sum of one term per coordinate of `y` (a diagonal Hessian), as the
    forward method [`solvers.CoordinateNewton`][] needs."""

    @abc.abstractmethod
    def potential(self, x_i: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        """One element's potential `F(x_i, y)`."""

    @abc.abstractmethod
    def regulariser(self, y: Float[Array, " m"]) -> Scalar:
        """`R(y)`."""

    @abc.abstractmethod
    def aggregate_size(self, in_size: int) -> int:
        """Size `m` of `y` for elements of size `in_size`; raises `ValueError` if the energy
        cannot take elements of that size."""

    def readout(self, y: Float[Array, " m"]) -> Float[Array, " k"]:
        """The layer's output from the argmin `y` (the identity, except for `Attention`)."""
        return y

    def default_solver(self) -> solvers.AbstractBackend:
        """The backend of a layer built without one: the paper's `Unrolled(steps=10)`; for a
        separable energy, `Implicit(steps=100, method=CoordinateNewton(),
        linear_solver="diagonal")`, which returns the argmin at any set size and data scale,
        or raises, with its exact implicit gradient."""
        if self.separable:
            return solvers.Implicit(
                steps=100, method=solvers.CoordinateNewton(), linear_solver="diagonal"
            )
        return solvers.Unrolled(steps=10)

    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        """The forward method of a backend given without one: `CoordinateNewton()` for a
        separable energy; otherwise, for a backend that runs to tolerance (Implicit,
        Phantom), `Newton()`, the fastest to tolerance in the benchmarks, and for one that
        differentiates a `T`-step procedure, the paper's `Nesterov()` (lr 0.125, momentum
        0.9, learnable; gtol 1e-3)."""
        if self.separable:
            return solvers.CoordinateNewton()
        if to_tolerance:
            return solvers.Newton()
        return solvers.Nesterov()

    def prepare(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> PyTree:
        """What `prepared_potential` needs of each element, computed once per solve: a pytree
        whose leaves have leading axis `n` (default: `x` itself). Masked rows of `x` are 0."""
        del segment_ids, num_segments, mask
        return x

    def prepared_potential(self, element: PyTree, y: Float[Array, " m"]) -> Scalar:
        """`F` of one element from its part of `prepare`'s output (default: `potential`)."""
        return self.potential(element, y)

    def bounds(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> tuple[Float[Array, "s m"], Float[Array, "s m"]] | None:
        """Per-set `(lower, upper)` bounds known to contain the argmin, or None (default)."""
        del x, segment_ids, num_segments, mask
        return None

    def segment_energies(
        self,
        x: Float[Array, "n d"],
        y: Float[Array, "s m"],
        segment_ids: Int[Array, " n"],
        mask: Bool[Array, " n"],
    ) -> Float[Array, " s"]:
        """Energies of `s` sets stored together: element `i` belongs to set `segment_ids[i]`
        and counts only where `mask[i]`. Returns one energy per set, `[s]`."""
        x = jnp.where(mask[:, None], x, 0)
        elements = self.prepare(x, segment_ids, y.shape[0], mask)
        return self.prepared_energies(elements, y, segment_ids, mask)

    def prepared_energies(
        self,
        elements: PyTree,
        y: Float[Array, "s m"],
        segment_ids: Int[Array, " n"],
        mask: Bool[Array, " n"],
    ) -> Float[Array, " s"]:
        """`segment_energies` from the output of `prepare` (what the solver evaluates)."""
        num_segments = y.shape[0]
        if num_segments == 1:  # one set: no gather of y per element
            potentials = jax.vmap(self.prepared_potential, (0, None))(elements, y[0])
        else:
            potentials = jax.vmap(self.prepared_potential)(elements, y[segment_ids])
        potentials = jnp.where(mask, potentials, 0)
        counts = segment_counts(segment_ids, num_segments, mask, y.dtype)
        total = jax.vmap(self.regulariser)(y) + segment_sum(potentials, segment_ids, num_segments)
        if self.scaled:
            total = total / (counts + SCALE_EPS) * jnp.log2(counts + 1)
        return jnp.where(counts > 0, total, 0.5 * jnp.sum(y**2, axis=-1))

    def __call__(
        self,
        x: Float[ArrayLike, "n d"],
        y: Float[ArrayLike, " m"],
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> Scalar:
        """The total energy `E(X, y)` of one set; rows where `mask` is False are ignored."""
        x, y = jnp.asarray(x), jnp.asarray(y)
        mask = jnp.ones(x.shape[0], bool) if mask is None else jnp.asarray(mask)
        segment_ids = jnp.zeros(x.shape[0], jnp.int32)
        return self.segment_energies(x, y[None], segment_ids, mask)[0]
