"""OTKE: the optimal transport embedding of Mialon et al. (ICLR 2021) as a set pooling."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

import solvers

from . import _transport
from ._abstract import AbstractSolvedAggregation, bind_solver


class OTKE(AbstractSolvedAggregation):
    """Pool a set by its entropic transport plan onto a trainable reference (Mialon et al.).

    For each head `h`, the plan `P` between the set's elements (row mass `p / n` each, `n`
    unmasked elements) and the reference points `z_h1 … z_hp` (column mass 1) for the kernel
    `exp(<x_i, z_hj> / ε)` (the cost `-<x_i, z_hj>`) is found by Sinkhorn; the output is
    `Pᵀ X`, each reference point's plan-weighted average of the elements, `[p, d]` per head,
    flattened to `heads · p · d`. With one reference point the plan is uniform and OTKE is
    mean pooling.

    **Arguments:**

    - `in_size`: element size `d`; `references`: points per head `p`; `heads`.
    - `eps`: the entropic regularisation `ε` (the authors' default 0.1).
    - `position_encoding`: None, or `"gaussian"` for sequences: the kernel is multiplied by
      `exp(-(t_i - u_j)² / σ²)`, `t_i = i / n` the element's position among the set's
      unmasked rows and `u_j = j / p` (OTK's `position_encoding="gaussian"`).
    - `sigma`: `σ` of the position encoding (the authors' DeepSEA model: 0.1).
    - `solver`: any backend; one built without `method=` runs [`solvers.Sinkhorn`][]
      (default:
      `Unrolled(OTKE.ITERATIONS["supervised"], method=Sinkhorn())`, as the authors' code).
    - `key`: a `jax.random` key for the reference (standard normal / `√d`).

    Shapes: `x: [n, d]`, `mask: [n]` → `[heads · p · d]`; an empty set gives zeros.
    """

    ITERATIONS: ClassVar[dict[str, int]] = {"supervised": 10, "sequence": 50, "layer": 100}
    """Sinkhorn iterations of the authors' code (claying/OTK): 10 in the supervised SCOP
    script, 50 in the sequence model, 100 as the layer's default there. `solver=None` uses
    `Unrolled(ITERATIONS["supervised"], method=Sinkhorn())`."""

    reference: Float[Array, "h p d"]
    eps: float = eqx.field(static=True)
    position_encoding: str | None = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    solver: solvers.AbstractBackend

    def __init__(
        self,
        in_size: int,
        references: int,
        heads: int = 1,
        eps: float = 0.1,
        position_encoding: str | None = None,
        sigma: float = 0.1,
        solver: solvers.AbstractBackend | None = None,
        *,
        key: PRNGKeyArray,
    ):
        if min(in_size, references, heads) < 1:
            raise ValueError(
                f"in_size, references and heads must be positive, got {in_size}, "
                f"{references}, {heads}"
            )
        if not eps > 0 or not sigma > 0:
            raise ValueError(f"eps and sigma must be positive, got {eps} and {sigma}")
        if position_encoding not in (None, "gaussian"):
            raise ValueError(
                f"position_encoding must be None or 'gaussian', got {position_encoding!r}"
            )
        solver = bind_solver(
            solvers.Unrolled(self.ITERATIONS["supervised"]) if solver is None else solver,
            self.default_method,
        )
        if solver.separable_only:
            raise ValueError(
                f"{type(solver.method).__name__} or the linear solver needs a separable energy; "
                f"OTKE's transport problem is not: use solvers.Sinkhorn (the default), "
                "solvers.Anderson(sinkhorn=solvers.Sinkhorn()) or Newton, and linear_solver='cg'"
            )
        scale = 1 / jnp.sqrt(in_size)
        self.reference = scale * jax.random.normal(key, (heads, references, in_size))
        self.eps = eps
        self.position_encoding = position_encoding
        self.sigma = sigma
        self.solver = solver

    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        """[`solvers.Sinkhorn`][], under every backend."""
        del to_tolerance
        return solvers.Sinkhorn()

    def output_size(self, in_size: int) -> int:
        d = self.reference.shape[-1]
        if in_size != d:
            raise ValueError(f"OTKE was built for elements of size {d}, got size {in_size}")
        return self.reference.size

    @eqx.filter_jit
    def solve_segments(
        self,
        x: Float[ArrayLike, "n d"],
        segment_ids: Int[ArrayLike, " n"],
        num_segments: int,
        mask: Bool[ArrayLike, " n"] | None = None,
    ) -> solvers.Solution:
        """Like `segments`, with per-set stats `[s]`."""
        x, segment_ids, mask = self._checked_segments(x, segment_ids, num_segments, mask)
        heads, p, _ = self.reference.shape
        rows, empty = _transport.set_rows(segment_ids, num_segments, mask)
        count = jnp.sum(rows, axis=1)
        cost = -jnp.einsum("nd,hpd->hnp", x, self.reference.astype(x.dtype))
        cost = jnp.broadcast_to(cost, (num_segments, heads, *cost.shape[1:]))
        if self.position_encoding == "gaussian":
            position = (jnp.cumsum(rows, axis=1) - 1) / count[:, None]  # [s, n]
            distance = position[:, :, None] - jnp.arange(p) / p  # [s, n, p]
            cost = cost + self.eps * ((distance / self.sigma) ** 2)[:, None]
        problem = solvers.EntropicOT(
            cost=cost.reshape(num_segments * heads, -1, p),
            row_mass=jnp.repeat(jnp.where(rows, p / count[:, None], 0), heads, axis=0),
            col_mass=jnp.ones((num_segments * heads, p), x.dtype),
            row_mask=jnp.repeat(rows, heads, axis=0),
            eps=jnp.asarray(self.eps, x.dtype),
        )
        plan, stats = _transport.solve(self.bound_solver(), problem)
        pooled = jnp.einsum("bnp,nd->bpd", plan, x).reshape(num_segments, -1)
        value = jnp.where(empty[:, None], 0, pooled)
        return solvers.Solution(value=value, stats=_transport.per_set(stats, heads))
