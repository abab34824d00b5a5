"""ROTP: regularised optimal transport pooling (Xu and Cheng) as a set pooling."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

import solvers

from . import _transport
from ._abstract import AbstractSolvedAggregation, bind_solver

PRIORS = ("uniform", "attention")


class ROTP(AbstractSolvedAggregation):
    """Pool a set through the plan of a regularised transport between its elements and its
    feature dimensions (Xu and Cheng, "Regularized Optimal Transport Layers for Generalized
    Global Pooling Operations").

    For a set `X` (`n × d`), the plan `T ≥ 0` (`n × d`) solves

    `min_T <-X, T> + a1·Σ T (log T - 1) + a2·KL(Tᵀ1 ‖ p0) + a3·KL(T1 ‖ q0)`,

    `p0 = 1/d` over the dimensions and `q0` over the set's unmasked elements: uniform, or
    the attention weights `softmax_n(w2ᵀ tanh(W1 x_n))` (`prior="attention"`). The output is
    `f_d = d · Σ_n x_nd T_nd`. `a1, a2, a3` are learnable (`softplus` of raw parameters).
    The problem is a [`solvers.EntropicOT`][] with cost `-X`, `ε = a1` and KL penalties
    `a3` (rows) and `a2` (columns); Sinkhorn's damped updates `a/(a + a1)` are ROTP's.

    Special cases (verified in the tests from these updates): large `a1, a2, a3` with the
    uniform prior is mean pooling (`T → q0 p0ᵀ`), with the attention prior attention pooling;
    `a1 → 0, a3 → 0` with `a2` large is max pooling (each dimension's mass `1/d` moves to its
    largest element, the sample marginal being free). The paper states the max limit as
    `a1 = a2 → 0` with `a3` large: that is this one with the roles of `a2` and `a3` swapped
    (its code stores `T` as `d × n`).

    **Arguments:**

    - `in_size`: element size `d`.
    - `a1`, `a2`, `a3`: initial values (the authors' default 1).
    - `prior`: `"uniform"` or `"attention"` (`W1: d → d`, `w2: d`).
    - `solver`: any backend; one built without `method=` runs [`solvers.Sinkhorn`][]
      (default:
      `Unrolled(STEPS, method=Sinkhorn())`).
    - `key`: a `jax.random` key (the attention prior's weights).

    Shapes: `x: [n, d]`, `mask: [n]` → `[d]`; an empty set gives zeros.
    """

    STEPS: ClassVar[int] = 4
    """Unrolled Sinkhorn steps of the authors' code (SDS-Lab/ROT-Pooling, `K = 4`): the
    default solver is `Unrolled(STEPS, method=Sinkhorn())`."""

    raw_a: Float[Array, "3"]
    attention: eqx.nn.Linear | None
    query: Float[Array, " d"] | None
    in_size: int = eqx.field(static=True)
    solver: solvers.AbstractBackend

    def __init__(
        self,
        in_size: int,
        a1: float = 1.0,
        a2: float = 1.0,
        a3: float = 1.0,
        prior: str = "uniform",
        solver: solvers.AbstractBackend | None = None,
        *,
        key: PRNGKeyArray,
    ):
        if in_size < 1:
            raise ValueError(f"in_size must be positive, got {in_size}")
        if not min(a1, a2, a3) > 0:
            raise ValueError(f"a1, a2, a3 must be positive, got {a1}, {a2}, {a3}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        solver = bind_solver(
            solvers.Unrolled(self.STEPS) if solver is None else solver, self.default_method
        )
        if solver.separable_only:
            raise ValueError(
                f"{type(solver.method).__name__} or the linear solver needs a separable energy; "
                f"ROTP's transport problem is not: use solvers.Sinkhorn (the default), "
                "solvers.Anderson(sinkhorn=solvers.Sinkhorn()) or Newton, and linear_solver='cg'"
            )
        dtype = jnp.result_type(float)
        self.raw_a = jnp.array([solvers.inverse_softplus(a) for a in (a1, a2, a3)], dtype)
        if prior == "attention":
            k_hidden, k_query = jax.random.split(key)
            self.attention = eqx.nn.Linear(in_size, in_size, key=k_hidden)
            self.query = jax.random.normal(k_query, (in_size,)) / jnp.sqrt(in_size)
        else:
            self.attention, self.query = None, None
        self.in_size = in_size
        self.solver = solver

    def default_method(self, to_tolerance: bool) -> solvers.AbstractMethod:
        """[`solvers.Sinkhorn`][], under every backend."""
        del to_tolerance
        return solvers.Sinkhorn()

    def output_size(self, in_size: int) -> int:
        if in_size != self.in_size:
            raise ValueError(
                f"ROTP was built for elements of size {self.in_size}, got size {in_size}"
            )
        return in_size

    @property
    def a(self) -> Float[Array, "3"]:
        """`(a1, a2, a3)`."""
        return jax.nn.softplus(self.raw_a)

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
        d = self.output_size(x.shape[1])
        rows, empty = _transport.set_rows(segment_ids, num_segments, mask)
        a1, a2, a3 = self.a.astype(x.dtype)
        problem = solvers.EntropicOT(
            cost=jnp.broadcast_to(-x, (num_segments, *x.shape)),
            row_mass=self._sample_prior(x, rows),
            col_mass=jnp.full((num_segments, d), 1 / d, x.dtype),
            row_mask=rows,
            eps=a1,
            row_penalty=a3,
            col_penalty=a2,
        )
        plan, stats = _transport.solve(self.bound_solver(), problem)
        pooled = d * jnp.einsum("snd,nd->sd", plan, x)
        return solvers.Solution(value=jnp.where(empty[:, None], 0, pooled), stats=stats)

    def _sample_prior(self, x: Float[Array, "n d"], rows: Bool[Array, "s n"]):
        """`q0` of each set, `[s, n]`: uniform over its rows, or attention weights."""
        if self.query is None:
            scores = jnp.zeros(rows.shape, x.dtype)
        else:
            scores = jnp.tanh(jax.vmap(self.attention)(x)) @ self.query
            scores = jnp.broadcast_to(scores.astype(x.dtype), rows.shape)
        return jax.nn.softmax(jnp.where(rows, scores, -jnp.inf), axis=1, where=rows)
