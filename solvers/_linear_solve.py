"""Linear solves for the implicit backward pass, one system per set.

The systems of the `b` sets are independent (the optimality condition is row-separable, so its
Jacobian is block-diagonal), and each is solved to its own relative tolerance: one set's tiny
cotangent is not drowned by another's huge one. Every solver works on `[b, n]` arrays; the
operator `matvec` maps such an array to one of the same shape, block by block.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

Matvec = Callable[[Float[Array, "b n"]], Float[Array, "b n"]]

DEFAULT_TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
"""`tol=None` resolves to this relative residual for the dtype of the system."""

DEFAULT_MAXITER = 100
"""`maxiter=None`: at most this many iterations (CG, normal CG) or Arnoldi vectors (GMRES)."""


class LinearSolveStats(eqx.Module):
    """Per-set diagnostics of one backward linear solve (all `[b]`).

    - `residual`: `||A x - rhs|| / ||rhs||` (0 for a zero right-hand side).
    - `iterations`: iterations (matrix-vector products) the set took.
    - `failed`: the solve broke down (non-finite result; non-positive curvature `pᵀAp ≤ 0`
      under CG, which means the Hessian is not positive definite: the forward did not stop
      at a strict minimum) or did not reach the tolerance within the iteration cap.
    """

    residual: Float[Array, " b"]
    iterations: Int[Array, " b"]
    failed: Bool[Array, " b"]


def _dot(a: Float[Array, "b n"], b: Float[Array, "b n"]) -> Float[Array, " b"]:
    return jnp.sum(a * b, axis=-1)


def _relative_residual(matvec: Matvec, x, rhs) -> Float[Array, " b"]:
    norm = jnp.sqrt(_dot(rhs, rhs))
    r = matvec(x) - rhs
    return jnp.where(norm > 0, jnp.sqrt(_dot(r, r)) / jnp.where(norm > 0, norm, 1), 0)


def _finish(
    matvec: Matvec, x, rhs, iterations, failed, tol: float | None
) -> tuple[Array, LinearSolveStats]:
    """The solution and its stats; a set also fails on a non-finite result and, unless `tol` is
    None (the caller judged convergence itself), on a true residual above `10 · tol`."""
    residual = _relative_residual(matvec, x, rhs)
    failed = failed | ~jnp.all(jnp.isfinite(x), axis=-1)
    if tol is not None:
        failed = failed | ~(residual <= 10 * tol)
    return x, LinearSolveStats(residual, iterations, failed)


def cg(matvec: Matvec, rhs: Float[Array, "b n"], tol: float, maxiter: int):
    """Conjugate gradient with per-set step sizes and stopping, for symmetric positive definite
    blocks. A set stops at `||r|| <= tol ||rhs||`; non-positive curvature marks it failed."""
    b = rhs.shape[0]
    target = tol * jnp.sqrt(_dot(rhs, rhs))
    rs = _dot(rhs, rhs)
    zeros = jnp.zeros(b, jnp.int32)
    init = (0, jnp.zeros_like(rhs), rhs, rhs, rs, jnp.sqrt(rs) <= target, zeros > 0, zeros)

    def cond(carry):
        i, _, _, _, _, done, broken, _ = carry
        return (i < maxiter) & jnp.any(~done & ~broken)

    def body(carry):
        i, x, r, p, rs, done, broken, iterations = carry
        ap = matvec(p)
        curvature = _dot(p, ap)
        active = ~done & ~broken
        broken = broken | (active & ~(curvature > 0))
        active = active & ~broken
        alpha = jnp.where(active, rs / jnp.where(active, curvature, 1), 0)[:, None]
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        beta = jnp.where(active, rs_new / jnp.where(active, rs, 1), 0)[:, None]
        p = jnp.where(active[:, None], r + beta * p, p)
        rs = jnp.where(active, rs_new, rs)
        done = done | (active & (jnp.sqrt(rs_new) <= target))
        return i + 1, x, r, p, rs, done, broken, iterations + active

    _, x, _, _, _, _, broken, iterations = jax.lax.while_loop(cond, body, init)
    return _finish(matvec, x, rhs, iterations, broken, tol)


def normal_cg(matvec: Matvec, rhs: Float[Array, "b n"], tol: float, maxiter: int):
    """CG on the normal equations `AᵀA x = Aᵀ rhs`, per set: for indefinite or non-symmetric
    blocks (it squares their condition number)."""
    transpose = jax.linear_transpose(matvec, rhs)
    normal = lambda v: transpose(matvec(v))[0]  # noqa: E731
    x, stats = cg(normal, transpose(rhs)[0], tol, maxiter)
    return _finish(matvec, x, rhs, stats.iterations, stats.failed, None)


def gmres(matvec: Matvec, rhs: Float[Array, "b n"], tol: float, maxiter: int):
    """GMRES with a per-set Krylov basis, least-squares solve and stopping, for non-symmetric
    or indefinite blocks: full (exact after `n` products) up to `maxiter` basis vectors,
    restarted beyond."""
    b, n = rhs.shape
    restart = min(n, maxiter)
    norm_rhs = jnp.sqrt(_dot(rhs, rhs))
    target = tol * norm_rhs

    def cycle(x):
        r = rhs - matvec(x)
        beta = jnp.sqrt(_dot(r, r))
        basis = jnp.zeros((restart + 1, b, n), rhs.dtype)
        basis = basis.at[0].set(r / jnp.where(beta > 0, beta, 1)[:, None])
        hessenberg = jnp.zeros((b, restart + 1, restart), rhs.dtype)

        def arnoldi(j, carry):
            basis, hessenberg = carry
            w = matvec(basis[j])
            keep = (jnp.arange(restart + 1) <= j)[:, None]
            for _ in range(2):  # classical Gram-Schmidt, twice
                h = jnp.einsum("kbn,bn->bk", basis, w) * keep.T
                w = w - jnp.einsum("bk,kbn->bn", h, basis)
                hessenberg = hessenberg.at[:, :, j].add(h)
            norm = jnp.sqrt(_dot(w, w))
            hessenberg = hessenberg.at[:, j + 1, j].set(norm)
            basis = basis.at[j + 1].set(w / jnp.where(norm > 0, norm, 1)[:, None])
            return basis, hessenberg

        basis, hessenberg = jax.lax.fori_loop(0, restart, arnoldi, (basis, hessenberg))
        e1 = jnp.zeros((b, restart + 1), rhs.dtype).at[:, 0].set(beta)
        q, upper = jnp.linalg.qr(hessenberg)
        diag = jnp.diagonal(upper, axis1=-2, axis2=-1)
        safe = jnp.where(diag == 0, 1, diag)
        upper = upper - jnp.einsum("bk,kl->bkl", diag - safe, jnp.eye(restart))
        coef = jax.scipy.linalg.solve_triangular(
            upper, jnp.einsum("bki,bk->bi", q, e1)[..., None], lower=False
        )[..., 0]
        return x + jnp.einsum("bk,kbn->bn", coef, basis[:restart])

    def residual_norm(x):
        r = rhs - matvec(x)
        return jnp.sqrt(_dot(r, r))

    cycles = max(1, maxiter // restart)
    zeros = jnp.zeros(b, jnp.int32)
    init = (0, jnp.zeros_like(rhs), norm_rhs <= target, zeros)

    def cond(carry):
        i, _, done, _ = carry
        return (i < cycles) & jnp.any(~done)

    def body(carry):
        i, x, done, iterations = carry
        x = jnp.where(done[:, None], x, cycle(x))
        iterations = iterations + jnp.where(done, 0, restart)
        return i + 1, x, done | (residual_norm(x) <= target), iterations

    _, x, _, iterations = jax.lax.while_loop(cond, body, init)
    return _finish(matvec, x, rhs, iterations, zeros > 0, tol)


def lu(matvec: Matvec, rhs: Float[Array, "b n"], tol: float, maxiter: int):
    """Dense solve of each set's `n × n` block (materialised with `n` matrix-vector products):
    a reference for small problems."""
    del maxiter
    b, n = rhs.shape
    basis = jnp.broadcast_to(jnp.eye(n, dtype=rhs.dtype)[:, None, :], (n, b, n))
    columns = jax.vmap(matvec)(basis)  # [n (column), b, n (row)]
    blocks = jnp.transpose(columns, (1, 2, 0))
    x = jnp.linalg.solve(blocks, rhs[..., None])[..., 0]
    return _finish(matvec, x, rhs, jnp.full(b, n, jnp.int32), jnp.zeros(b, bool), tol)


def diagonal(matvec: Matvec, rhs: Float[Array, "b n"], tol: float, maxiter: int):
    """Exact for diagonal blocks (separable energies): `x = rhs / A·1`, one product."""
    del maxiter
    diag = matvec(jnp.ones_like(rhs))
    x = rhs / diag
    return _finish(matvec, x, rhs, jnp.ones(rhs.shape[0], jnp.int32), ~(diag != 0).all(-1), tol)


SOLVERS = {"cg": cg, "normal_cg": normal_cg, "gmres": gmres, "lu": lu, "diagonal": diagonal}
"""The linear solvers `solvers.Implicit(linear_solver=...)` takes, by name."""
