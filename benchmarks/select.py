"""Recommend a differentiation backend for a user's layer from short probes (item 5).

    from benchmarks.select import recommend_backend
    rec = recommend_backend(layer, x_batch)      # layer: EquilibriumAggregation, x: [b, n, d]
    print(rec.backend, rec.steps, rec.k); print(*rec.reasons, sep="\\n")

`python -m benchmarks select` prints the recommendation for the default median model.
"""

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float

import eqx_agg

from . import problem
from ._results import Results, progress
from .accuracy import cosine
from .memory import compiled_bytes
from .timing import median_time


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What `recommend_backend` returns.

    - `backend`: `"implicit"`, `"unrolled"` or `"truncated"`.
    - `steps`: inner steps `T`; `k`: taped steps (Truncated only, else None).
    - `reasons`: the measured facts the choice rests on, one sentence each.
    - `measurements`: one dict per probe (backend, T, k, residual, cosine, bytes, seconds).
    """

    backend: str
    steps: int
    k: int | None
    reasons: list[str]
    measurements: list[dict[str, Any]]


def _probe_loss(layer_and_x, mask, cotangent):
    layer, x = layer_and_x
    y = jax.vmap(layer)(x, mask)
    return jnp.sum(y * cotangent)


def _probe(layer, x, mask, cotangent, repeats: int) -> dict[str, Any]:
    params, static = eqx.partition(layer, eqx.is_array)

    def loss_and_grad(params, x):
        layer = eqx.combine(params, static)
        grads = eqx.filter_grad(_probe_loss)((layer, x), mask, cotangent)
        theta_and_x = (eqx.tree_at(lambda g: g.solver, grads[0], None), grads[1])
        solutions = jax.vmap(layer.solve)(x, mask)
        flat = ravel_pytree(eqx.filter(theta_and_x, eqx.is_array))[0]
        return flat, solutions.stats.grad_max_norm

    compiled = jax.jit(loss_and_grad).lower(params, x).compile()
    grad, residual = compiled(params, x)
    timed = median_time(compiled, params, x, repeats=repeats)
    return {
        "grad": np.asarray(grad),
        "residual": float(jnp.max(residual)),
        "bytes": compiled_bytes(compiled)["total_bytes"],
        "seconds": timed["seconds"],
    }


def recommend_backend(
    layer: eqx_agg.EquilibriumAggregation,
    x_batch: Float[Array, "b n d"],
    mask: Bool[Array, "b n"] | None = None,
    *,
    steps: Sequence[int] = (5, 10, 20, 50),
    ks: Sequence[int] = (1, 2, 5),
    tol: float | None = None,
    agreement: float = 0.99,
    memory_budget: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    quiet: bool = True,
) -> Recommendation:
    """Probe `layer` on a batch of the user's sets and recommend (backend, T, k).

    The probe loss is a fixed random linear functional of the layer's outputs; its gradient
    w.r.t. the layer's parameters (outside the solver) and the inputs `x_batch` (what an
    encoder before the layer receives) is computed by each backend with the
    layer's own lr, momentum, gtol and clip. For each `T` in `steps` the probes measure the
    forward residual `max|∇_y E|`, the compiled forward+backward bytes and median time, and
    the cosine similarity of each gradient to Unrolled at the largest `T`.

    Rule: the smallest `T` whose residual is below `tol` (default: the layer's gtol, or
    1e-3 when that is 0) is *converged*; there Implicit is recommended if its gradient
    agrees (cosine ≥ `agreement`) with Unrolled's, since its memory does not grow with T.
    Otherwise the inner problem is not solved and the gradient of the procedure itself is
    what training sees: Unrolled at the smallest `T` whose gradient agrees with Unrolled at
    the largest `T`, or, if that exceeds `memory_budget` bytes, Truncated with the
    smallest `k` in `ks` that agrees with that Unrolled gradient.

    **Arguments:**

    - `layer`: an [`eqx_agg.EquilibriumAggregation`][].
    - `x_batch`: `[b, n, d]`, a representative batch; `mask`: optional `[b, n]`.
    - `steps`, `ks`: candidate `T` and Truncated `k`.
    - `tol`, `agreement`, `memory_budget`: the thresholds above.
    - `repeats`: timed runs per probe; `seed`: for the probe functional; `quiet`: no bar.

    **Returns:** a `Recommendation`.
    """
    if x_batch.ndim != 3:
        raise ValueError(f"x_batch must have shape [b, n, d], got shape {x_batch.shape}")
    if mask is not None and mask.shape != x_batch.shape[:2]:
        raise ValueError(f"mask must have shape {x_batch.shape[:2]}, got shape {mask.shape}")
    steps = sorted(steps)
    optimizer = layer.solver.optimizer
    options = dict(
        lr=float(optimizer.lr), momentum=float(optimizer.momentum), gtol=optimizer.gtol,
        clip=optimizer.clip, throw=False,
    )  # fmt: skip
    tol = (optimizer.gtol or 1e-3) if tol is None else tol
    out = jax.eval_shape(jax.vmap(layer), x_batch, mask)
    cotangent = jax.random.normal(jax.random.PRNGKey(seed), out.shape, out.dtype)

    probes: dict[tuple[str, int, int | None], dict[str, Any]] = {}

    def probe(name, t, k=None):
        if (name, t, k) not in probes:
            solver = problem.cast(problem.make_backend(name, t, k, **options), out.dtype)
            candidate = eqx.tree_at(lambda m: m.solver, layer, solver)
            probes[name, t, k] = _probe(candidate, x_batch, mask, cotangent, repeats)
        return probes[name, t, k]

    runs = [(name, t) for t in steps for name in ("unrolled", "implicit")]
    for name, t in progress(runs, "select", quiet=quiet):
        probe(name, t)
    target = probes["unrolled", steps[-1], None]["grad"]
    residual = {t: probes["unrolled", t, None]["residual"] for t in steps}
    cos = {key: cosine(p["grad"], target) for key, p in probes.items()}
    reasons = []
    converged = [t for t in steps if residual[t] < tol]
    choice: tuple[str, int, int | None] | None = None
    if converged:
        t = converged[0]
        implicit, unrolled = probes["implicit", t, None], probes["unrolled", t, None]
        reasons.append(f"forward converged at T={t}: max|∇_y E| = {residual[t]:.2g} < {tol:g}")
        if cos["implicit", t, None] >= agreement:
            choice = ("implicit", t, None)
            reasons.append(
                f"Implicit gradient agrees with Unrolled(T={steps[-1]}): cosine "
                f"{cos['implicit', t, None]:.4f} >= {agreement}"
            )
            reasons.append(
                f"Implicit uses {implicit['bytes'] / unrolled['bytes']:.2f}x Unrolled's bytes "
                f"and {implicit['seconds'] / unrolled['seconds']:.2f}x its time at T={t}, "
                "and its memory does not grow with T"
            )
        else:
            reasons.append(
                f"but Implicit's gradient disagrees with Unrolled(T={steps[-1]}): cosine "
                f"{cos['implicit', t, None]:.4f} < {agreement}"
            )
    else:
        reasons.append(
            f"forward not converged at any T <= {steps[-1]}: max|∇_y E| = "
            f"{residual[steps[-1]]:.2g} >= {tol:g}, so Implicit's gradient is not the "
            "gradient of the computed output"
        )
    if choice is None:
        t = next(t for t in steps if cos["unrolled", t, None] >= agreement)
        if t < steps[-1]:
            reasons.append(
                f"Unrolled(T={t}) gradient agrees with Unrolled(T={steps[-1]}): cosine "
                f"{cos['unrolled', t, None]:.4f}"
            )
        else:
            closest = max(cos["unrolled", s, None] for s in steps[:-1]) if steps[:-1] else 0.0
            reasons.append(
                f"no smaller T agrees with Unrolled(T={t}) (best cosine {closest:.4f} < "
                f"{agreement}): the gradient still changes with T, so the largest probed T "
                "is kept; probe larger T (--steps) for a firmer answer"
            )
        choice = ("unrolled", t, None)
        unrolled_bytes = probes["unrolled", t, None]["bytes"]
        if memory_budget is not None and unrolled_bytes > memory_budget:
            reasons.append(f"Unrolled(T={t}) needs {unrolled_bytes} bytes > {memory_budget}")
            for k in [k for k in sorted(ks) if k < t]:
                p = probe("truncated", t, k)
                c = cosine(p["grad"], target)
                if c >= agreement and p["bytes"] <= memory_budget:
                    choice = ("truncated", t, k)
                    reasons.append(
                        f"Truncated(T={t}, k={k}) fits ({p['bytes']} bytes) with cosine {c:.4f}"
                    )
                    break
            else:
                reasons.append("no Truncated k fits the budget with agreement; kept Unrolled")
    measurements = [
        {
            "backend": name,
            "T": t,
            "k": k,
            "residual": p["residual"],
            "cosine_to_unrolled_max_T": cosine(p["grad"], target),
            "bytes": p["bytes"],
            "seconds": p["seconds"],
        }  # fmt: skip
        for (name, t, k), p in probes.items()
    ]
    return Recommendation(*choice, reasons=reasons, measurements=measurements)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks select", description=__doc__)
    problem.add_problem_flags(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--tol", type=float, default=None)
    parser.add_argument("--memory-budget", type=int, default=None, help="bytes")
    parser.add_argument("--repeats", type=int, default=3)
    return parser


QUICK = dict(steps=[2, 4], repeats=1)


def main(argv: list[str] | None = None) -> Results:
    """Print and write (`results/select/`) the recommendation for the default model."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, _ = problem.problem_from_args(args)
    results = Results("select", problem.config_of(args), args.out)
    rec = recommend_backend(
        model.layer, x, steps=args.steps, ks=args.ks, tol=args.tol,
        memory_budget=args.memory_budget, repeats=args.repeats, seed=args.seed, quiet=args.quiet,
    )  # fmt: skip
    for row in rec.measurements:
        results.add(**row)
    summary = f"Recommendation: backend={rec.backend}, T={rec.steps}, k={rec.k}"
    results.add_section(summary + "\n\n" + "\n".join(f"- {r}" for r in rec.reasons))
    results.write(
        ["backend", "T", "k", "residual", "cosine_to_unrolled_max_T", "bytes", "seconds"],
        extra={"recommendation": dataclasses.asdict(rec) | {"measurements": None}},
    )
    print(summary)
    print("\n".join(f"  - {r}" for r in rec.reasons))
    return results


if __name__ == "__main__":
    main()
