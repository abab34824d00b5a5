"""What the transport layers (OTKE, ROTP) share: sets as rows of a batch of transport
problems, the solve, and per-set statistics."""

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

import solvers


def set_rows(
    segment_ids: Int[Array, " n"], num_segments: int, mask: Bool[Array, " n"]
) -> tuple[Bool[Array, "s n"], Bool[Array, " s"]]:
    """`rows[s, i]`: element `i` is an unmasked member of set `s`; and which sets are empty.

    An empty set has no transport plan, so its row is replaced by every element (a
    well-posed problem whose output the layer then replaces by zeros)."""
    rows = (segment_ids[None, :] == jnp.arange(num_segments)[:, None]) & mask[None, :]
    empty = ~jnp.any(rows, axis=1)
    return rows | empty[:, None], empty


def solve(
    solver: solvers.AbstractBackend, problem: solvers.EntropicOT
) -> tuple[Float[Array, "b n p"], solvers.Stats]:
    """The transport plans of a batch of problems, and the solve's per-problem stats."""
    n, p = problem.sizes
    y0 = jnp.zeros((problem.cost.shape[0], n + p), problem.cost.dtype)
    sol = solver.solve(solvers.dual_energy, y0, problem, optimality=solvers.transport_optimality)
    return problem.plan(sol.value), sol.stats


def per_set(stats: solvers.Stats, groups: int) -> solvers.Stats:
    """Stats of `s · groups` problems (grouped set-major: set `i` owns problems
    `i·groups … i·groups + groups - 1`, e.g. its heads) reduced to one entry per set: the
    worst residual and step count, the mean auxiliary loss, the summed energy."""

    def group(a):
        return a.reshape(-1, groups, *a.shape[1:])

    return solvers.Stats(
        grad_max_norm=jnp.max(group(stats.grad_max_norm), axis=1),
        aux_loss=jnp.mean(group(stats.aux_loss), axis=1),
        energy=jnp.sum(group(stats.energy), axis=1),
        num_steps=jnp.max(group(stats.num_steps), axis=1),
        converged=jnp.all(group(stats.converged), axis=1),
        diverged=jnp.any(group(stats.diverged), axis=1),
        grad_max_norm_history=jnp.max(group(stats.grad_max_norm_history), axis=1),
        energy_history=jnp.sum(group(stats.energy_history), axis=1),
    )
