"""Gradient accuracy of each backend against a converged float64 reference (issue item 1).

The reference is the gradient of the loss w.r.t. every parameter at the exact argmin:
float64, the inner problem solved to `max|∇_y E| < --ref-tol` with `gtol = 0`, the
implicit gradient taken with a dense LU solve, and itself checked against central finite
differences along random directions. Each backend's gradient for every `T` is compared with
it and, separately, with the unrolled gradient of the same `T`-step procedure.

    python -m benchmarks accuracy [--steps 1 2 5 ...] [--backends ...] [--quick]
"""

import argparse
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import solvers

from . import problem
from ._results import Results, progress


def relative_error(g: np.ndarray, reference: np.ndarray) -> float:
    """`||g - reference|| / ||reference||`."""
    return float(np.linalg.norm(g - reference) / np.linalg.norm(reference))


def cosine(g: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of two flat gradients (0 when either is zero)."""
    norms = np.linalg.norm(g) * np.linalg.norm(reference)
    return float(g @ reference / norms) if norms > 0 else 0.0


def measure(model, x, labels) -> dict[str, Any]:
    """θ-gradient (flat numpy), optimizer gradients and forward residual `max|∇_y E|`."""
    theta, optimizer, residual = eqx.filter_jit(problem.parameter_grads)(model, x, labels)
    return {
        "grad": np.asarray(theta),
        "grad_lr": float(optimizer["lr"]),
        "grad_momentum": float(optimizer["momentum"]),
        "residual": float(residual),
    }


def reference(model, x, labels, steps: int, tol: float, attempts: int = 4):
    """The reference measurement: Implicit + LU with `gtol = 0`; while the forward residual
    is not below `tol`, steps are doubled and the inner lr halved (at most `attempts` tries).
    """
    lr = float(model.layer.solver.optimizer.lr)
    for _ in range(attempts):
        solver = solvers.Implicit(steps, lr=lr, gtol=0.0, linear_solver="lu", throw=False)
        solver = problem.cast(solver, x.dtype)
        ref = measure(problem.with_solver(model, solver), x, labels)
        if ref["residual"] < tol:
            break
        steps, lr = 2 * steps, lr / 2
    return {**ref, "steps": steps, "lr": lr, "solver": solver}


def finite_difference_check(model, x, labels, grad, directions: int, eps: float, key):
    """Central differences `(L(θ+εv) - L(θ-εv)) / 2ε` against `grad · v` along random unit
    directions `v` of θ (the parameters outside the solver). One dict per direction."""
    flat, unravel = ravel_pytree(problem.theta_of(model))
    loss = eqx.filter_jit(problem.loss)
    checks = []
    for k in jax.random.split(key, directions):
        v = jax.random.normal(k, flat.shape, flat.dtype)
        v = v / jnp.linalg.norm(v)
        step = unravel(eps * v)
        plus = loss(eqx.apply_updates(model, step), x, labels)
        back = jax.tree_util.tree_map(jnp.negative, step)
        minus = loss(eqx.apply_updates(model, back), x, labels)
        fd = float((plus - minus) / (2 * eps))
        analytic = float(grad @ np.asarray(v))
        checks.append(
            {
                "finite_difference": fd,
                "implicit_lu": analytic,
                "relative_difference": abs(fd - analytic) / max(abs(fd), 1e-300),
            }
        )
    return checks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks accuracy", description=__doc__)
    problem.add_problem_flags(parser, dtype="float64")
    problem.add_sweep_flags(parser, k_help="Truncated's k in the T sweep")
    parser.add_argument("--sweep-steps", type=int, default=20, help="T of the Truncated k sweep")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--gtol", type=float, default=0.0, help="inner gtol of every backend")
    parser.add_argument("--linear-solver", default="cg", help="Implicit's linear solver")
    parser.add_argument("--linear-tol", type=float, default=1e-10, help="its tolerance")
    parser.add_argument("--ref-steps", type=int, default=1000)
    parser.add_argument("--ref-tol", type=float, default=1e-10)
    parser.add_argument("--fd-directions", type=int, default=3)
    parser.add_argument("--fd-eps", type=float, default=1e-5)
    return parser


QUICK = dict(steps=[1, 2, 5], sweep_steps=5, ks=[1, 2, 5], ref_steps=400, fd_directions=2)


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/accuracy/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, labels = problem.problem_from_args(args)
    results = Results("accuracy", problem.config_of(args), args.out)
    options = dict(gtol=args.gtol, throw=False)

    ref = reference(model, x, labels, args.ref_steps, args.ref_tol)
    ref_model = problem.with_solver(model, ref["solver"])
    key = jax.random.PRNGKey(args.seed + 1)
    fd = finite_difference_check(
        ref_model, x, labels, ref["grad"], args.fd_directions, args.fd_eps, key
    )

    def backend(name, steps, k=None, **extra):
        if name == "implicit":
            extra |= {"linear_solver": args.linear_solver, "tol": args.linear_tol}
        return problem.cast(problem.make_backend(name, steps, k, **options, **extra), x.dtype)

    runs = [(name, t, min(args.k, t) if name == "truncated" else None, "T")
            for t in args.steps for name in args.backends]  # fmt: skip
    if "truncated" in args.backends:
        runs += [("truncated", args.sweep_steps, k, "k") for k in args.ks if k <= args.sweep_steps]
    if "implicit" in args.backends:
        runs.append(("implicit", ref["steps"], None, "converged"))
    cache: dict[tuple, dict[str, Any]] = {}

    def run(name, steps, k, **extra):
        if (name, steps, k) not in cache:
            model_ = problem.with_solver(model, backend(name, steps, k, **extra))
            cache[name, steps, k] = measure(model_, x, labels)
        return cache[name, steps, k]

    for name, steps, k, sweep in progress(runs, "accuracy", quiet=args.quiet):
        # no tape through the reference's many steps: the converged row skips Unrolled
        base = None if sweep == "converged" else run("unrolled", steps, None)["grad"]
        # the converged row uses the reference's steps and lr
        m = run(name, steps, k, **({"lr": ref["lr"]} if sweep == "converged" else {}))
        results.add(
            backend=name,
            sweep=sweep,
            T=steps,
            k=k,
            residual=m["residual"],
            rel_err_ref=relative_error(m["grad"], ref["grad"]),
            cos_ref=cosine(m["grad"], ref["grad"]),
            rel_err_unrolled=None if base is None else relative_error(m["grad"], base),
            cos_unrolled=None if base is None else cosine(m["grad"], base),
            grad_lr=m["grad_lr"],
            grad_momentum=m["grad_momentum"],
        )

    targets = _targets(results.records, ref, fd)
    _report(results, ref, fd, targets)
    results.write(
        [
            "backend",
            "sweep",
            "T",
            "k",
            "residual",
            "rel_err_ref",
            "cos_ref",
            "rel_err_unrolled",
            "cos_unrolled",
            "grad_lr",
            "grad_momentum",
        ],  # fmt: skip
        extra={
            "reference": {
                "steps": ref["steps"],
                "lr": ref["lr"],
                "residual": ref["residual"],
                "tol": args.ref_tol,
                "grad_norm": float(np.linalg.norm(ref["grad"])),
                "grad_lr": ref["grad_lr"],
                "grad_momentum": ref["grad_momentum"],
            },
            "finite_differences": fd,
            "targets": targets,
        },
    )
    return results


def _targets(records, ref, fd) -> list[dict[str, Any]]:
    targets = [
        {
            "target": f"reference residual (max-norm of ∇_y E, steps={ref['steps']}) < 1e-10",
            "measured": ref["residual"],
            "met": bool(ref["residual"] < 1e-10),
        },
        {
            "target": "reference vs central finite differences (max relative difference)",
            "measured": max(c["relative_difference"] for c in fd),
            "met": bool(max(c["relative_difference"] for c in fd) < 1e-5),
        },
    ]
    converged = [r for r in records if r["sweep"] == "converged"]
    if converged:
        err = converged[0]["rel_err_ref"]
        targets.append(
            {
                "target": f"converged Implicit (T={converged[0]['T']}) relative error <= 1e-6",
                "measured": err,
                "met": bool(err <= 1e-6),
            }
        )
    return targets


def _report(results: Results, ref, fd, targets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._results import markdown_table

    records = [r for r in results.records if r["sweep"] == "T"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in sorted({r["backend"] for r in records}):
        rows = [r for r in records if r["backend"] == name]
        ts = [r["T"] for r in rows]
        for ax, key in zip(axes[:2], ["rel_err_ref", "rel_err_unrolled"], strict=True):
            ax.loglog(ts, [max(r[key], 1e-17) for r in rows], "o-", label=name)
    residual_rows = [r for r in records if r["backend"] == records[0]["backend"]]
    axes[2].loglog([r["T"] for r in residual_rows], [r["residual"] for r in residual_rows], "o-")
    titles = ["relative error vs reference", "relative error vs Unrolled(T)", "forward residual"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("inner steps T")
        ax.set_title(title)
    axes[2].set_ylabel("max |∇_y E|")
    axes[0].legend()
    results.save_figure(
        fig, "accuracy_vs_steps", "Gradient relative error (floored at 1e-17) and residual vs T."
    )
    plt.close(fig)

    sweep = [r for r in results.records if r["sweep"] == "k"]
    if sweep:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.semilogy([r["k"] for r in sweep], [max(r["rel_err_ref"], 1e-17) for r in sweep], "o-",
                    label="vs reference")  # fmt: skip
        ax.semilogy([r["k"] for r in sweep], [max(r["rel_err_unrolled"], 1e-17) for r in sweep],
                    "s--", label=f"vs Unrolled({sweep[0]['T']})")  # fmt: skip
        ax.set_xlabel("taped steps k")
        ax.set_ylabel("relative error")
        ax.legend()
        results.save_figure(fig, "truncated_k", f"Truncated(T={sweep[0]['T']}) error over k.")
        plt.close(fig)

    results.add_section(
        f"Reference: Implicit + LU, {ref['steps']} steps, gtol 0, residual "
        f"{ref['residual']:.3g}, |g| = {np.linalg.norm(ref['grad']):.4g}. Finite differences "
        "along random unit directions of θ:\n\n"
        + markdown_table(fd, ["finite_difference", "implicit_lu", "relative_difference"])
    )
    results.add_section(
        "Gradients w.r.t. the inner optimizer's raw lr and momentum: Implicit gives exactly "
        "zero by design (they do not move the fixed point); Unrolled and Truncated do not.\n\n"
        + markdown_table(records, ["backend", "T", "grad_lr", "grad_momentum"])
    )
    results.add_section("Targets:\n\n" + markdown_table(targets, ["target", "measured", "met"]))


if __name__ == "__main__":
    main()
