"""Gradient accuracy of each backend against a converged float64 reference.

The reference is the gradient of the loss w.r.t. every parameter at the exact argmin:
float64, the inner problem solved to max|∇_y E| < --ref-tol, the implicit gradient taken
with a dense LU solve, and itself checked against central finite differences along random
directions. Each backend's gradient for every T is compared with it and, separately, with
the unrolled gradient of the same T-step procedure. There is one reference per forward
method among the rows (by default Nesterov for Unrolled, Checkpointed and Truncated, Newton
for Implicit and Phantom): a non-convex energy can have several stationary points, each row
is compared with the one its own method reaches, and the report says whether they differ.
The `converged` row runs the first reference's forward with the suite's `--linear-solver`
instead of LU.

examples:
  python -m benchmarks accuracy
  python -m benchmarks accuracy --inner-steps 1 5 20 --backends unrolled implicit
  python -m benchmarks accuracy --layer otke
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import solvers

from ..shared import cli, compiled, strategies
from ..shared.results import Results, markdown_table, progress, target, targets_section
from ..shared.strategies import make_backend
from . import problem

ABOUT = (
    "Gradient of the median model's loss w.r.t. every parameter outside the solver, per "
    "backend and number of inner steps T, against a converged float64 reference (implicit "
    "gradient at the exact argmin, checked against finite differences): `rel_err_ref` and "
    "`cos_ref` say how close the training signal is to the gradient of the true argmin; "
    "`rel_err_unrolled` and `cos_unrolled` how close it is to the gradient of what the "
    "forward actually computed (Unrolled at the same T). `residual` is the forward's final "
    "max|∇_y E|. `grad_lr`, `grad_momentum`: gradients w.r.t. the inner lr and momentum "
    "(zero under Implicit by design; EA only). With `--layer otke` or `rotp` the layer is a "
    "transport layer and the residual its largest marginal violation."
)


def relative_error(g: np.ndarray, reference: np.ndarray) -> float:
    """`||g - reference|| / ||reference||`."""
    return float(np.linalg.norm(g - reference) / np.linalg.norm(reference))


def cosine(g: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of two flat gradients (0 when either is zero)."""
    norms = np.linalg.norm(g) * np.linalg.norm(reference)
    return float(g @ reference / norms) if norms > 0 else 0.0


def measure(model, x, labels) -> dict[str, Any]:
    """θ-gradient (flat numpy), optimizer gradients (None without them) and forward residual
    `max|∇_y E|`."""
    theta, optimizer, residual = eqx.filter_jit(problem.parameter_grads)(model, x, labels)
    return {
        "grad": np.asarray(theta),
        "grad_lr": float(optimizer["lr"]) if optimizer else None,
        "grad_momentum": float(optimizer["momentum"]) if optimizer else None,
        "residual": float(residual),
    }


def reference(model, x, labels, method, steps: int, tol: float, attempts: int = 4):
    """The reference measurement: Implicit + LU running the rows' forward `method` with
    tolerance 0 (the same method reaches the same stationary point of a possibly non-convex
    energy); while the forward residual is not below `tol`, steps are doubled, and a
    Nesterov's lr halved (at most `attempts` tries). `lr` is None for other methods."""
    nesterov = isinstance(method, solvers.Nesterov)
    lr = float(method.lr) if nesterov else None
    for _ in range(attempts):
        if nesterov:
            method = solvers.Nesterov(lr=lr, gtol=0.0)
        solver = solvers.Implicit(steps, method=method.with_tolerance(0.0), linear_solver="lu",
                                  throw=False)  # fmt: skip
        ref = measure(problem.with_solver(model, solver), x, labels)
        if ref["residual"] < tol:
            break
        steps, lr = 2 * steps, lr / 2 if nesterov else None
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


def _parser():
    parser = cli.parser("accuracy", __doc__)
    problem.add_problem_flags(parser, dtype="float64", layers=True)
    problem.add_sweep_flags(parser)
    group = parser.add_argument_group("accuracy")
    group.add_argument(
        "--k-sweep-steps", type=cli.positive_int, default=20, help="T of the Truncated k sweep"
    )
    group.add_argument(
        "--truncate-ks", type=cli.positive_int, nargs="+", default=[1, 2, 5, 10, 20],
        help="the values of k the Truncated sweep measures",
    )  # fmt: skip
    group.add_argument(
        "--gtol", type=cli.non_negative_float, default=0.0,
        help="every backend's inner tolerance, gtol or Sinkhorn's tol (0: exactly T steps)",
    )  # fmt: skip
    group.add_argument(
        "--linear-solver", choices=["cg", "normal_cg", "gmres", "lu"], default="cg",
        help="Implicit's linear solver",
    )  # fmt: skip
    group.add_argument(
        "--linear-tol", type=cli.positive_float, default=1e-10, help="its relative tolerance"
    )
    group.add_argument(
        "--ref-steps", type=cli.positive_int, default=1000, help="the reference's inner steps"
    )
    group.add_argument(
        "--ref-tol", type=cli.positive_float, default=1e-10, help="the reference's residual"
    )
    group.add_argument(
        "--fd-directions", type=cli.positive_int, default=3, help="finite-difference checks"
    )
    group.add_argument(
        "--fd-eps", type=cli.positive_float, default=1e-5, help="finite-difference step"
    )
    return parser


QUICK = dict(
    inner_steps=[1, 2, 5], k_sweep_steps=5, truncate_ks=[1, 2, 5], ref_steps=400, fd_directions=2
)


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/accuracy/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, labels = problem.problem_from_args(args)
    results = Results("accuracy", problem.config_of(args), args.out, ABOUT)

    def method_of(name: str) -> solvers.AbstractMethod:
        """Backend `name`'s forward method: --method, or the layer's own for that backend."""
        return problem.with_solver(model, problem.sweep_backend(args, name, 1)).pool.solver.method

    # One reference per forward method: on a non-convex energy two methods can stop at two
    # stationary points, and each row is compared with the argmin its own forward finds.
    refs: dict[str, dict[str, Any]] = {}
    for name in ["unrolled", *args.backends]:
        method = method_of(name)
        if type(method).__name__ not in refs:
            refs[type(method).__name__] = reference(
                model, x, labels, method, args.ref_steps, args.ref_tol
            )
    ref = next(iter(refs.values()))  # the T-step procedures' forward (Unrolled's)
    ref_model = problem.with_solver(model, ref["solver"])
    key = jax.random.PRNGKey(args.seed + 1)
    fd = finite_difference_check(
        ref_model, x, labels, ref["grad"], args.fd_directions, args.fd_eps, key
    )

    def backend(name, steps, k, sweep):
        """`name` at `steps`: under the tolerance sweep with --gtol (and the suite's linear
        solve), under `default` as a user gets it (every setting at its default)."""
        if sweep == "default":
            return problem.with_solver(model, make_backend(name, steps, throw=False))
        extra = {}
        if name == "implicit":
            extra = {"linear_solver": args.linear_solver, "tol": args.linear_tol}
        solver = problem.sweep_backend(args, name, steps, throw=False, **extra)
        if k is not None:
            solver = make_backend(name, steps, k=k, method=solver.method, throw=False)
        return problem.with_solver(model, solver, tolerance=args.gtol)

    runs = [(name, t, None, sweep) for sweep in ("T", "default") for t in args.inner_steps
            for name in args.backends]  # fmt: skip
    if "truncated" in args.backends:
        sweep = args.k_sweep_steps
        runs += [("truncated", sweep, k, "k") for k in args.truncate_ks if k <= sweep]
    if "implicit" in args.backends:
        runs.append(("implicit", ref["steps"], None, "converged"))
    cache: dict[tuple, dict[str, Any]] = {}

    def run(name, steps, k, sweep):
        key = (name, steps, k, "default" if sweep == "default" else "T")
        if key not in cache:
            candidate = backend(name, steps, k, key[3])
            cache[key] = {**measure(candidate, x, labels),
                          **strategies.describe(candidate.pool.solver)}  # fmt: skip
        return cache[key]

    def run_converged():
        """The reference's forward (same method, steps, lr: the same stationary point of a
        possibly non-convex energy) with the suite's linear solver instead of LU."""
        solver = solvers.Implicit(
            ref["steps"], method=ref["solver"].method, linear_solver=args.linear_solver,
            tol=args.linear_tol, throw=False,
        )  # fmt: skip
        candidate = problem.with_solver(model, solver)
        return {**measure(candidate, x, labels), **strategies.describe(candidate.pool.solver)}

    for name, steps, k, sweep in progress(runs, "accuracy", quiet=args.quiet):
        # no tape through the reference's many steps: the converged row skips Unrolled
        base = None if sweep == "converged" else run("unrolled", steps, None, sweep)["grad"]
        m = run_converged() if sweep == "converged" else run(name, steps, k, sweep)
        results.add(
            backend=name,
            method=m["method"],
            sweep=sweep,
            T=steps,
            k=m["k"],
            residual=m["residual"],
            rel_err_ref=relative_error(m["grad"], refs[m["method"]]["grad"]),
            cos_ref=cosine(m["grad"], refs[m["method"]]["grad"]),
            rel_err_unrolled=None if base is None else relative_error(m["grad"], base),
            cos_unrolled=None if base is None else cosine(m["grad"], base),
            grad_lr=m["grad_lr"],
            grad_momentum=m["grad_momentum"],
        )
        compiled.release_if_near_limit()  # every row compiles its own functions

    targets = _targets(results.records, refs, fd)
    _report(results, refs, fd, targets)
    results.write(
        [
            "backend",
            "method",
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
            "references": {
                name: {"steps": r["steps"], "residual": r["residual"]} for name, r in refs.items()
            },
        },
    )
    return results


def _targets(records, refs, fd) -> list[dict[str, Any]]:
    worst_fd = max(c["relative_difference"] for c in fd)
    targets = [
        target(
            f"{name} reference residual (max-norm of ∇_y E, steps={ref['steps']}) < 1e-10",
            ref["residual"],
            ref["residual"] < 1e-10,
            "the reference's inner solve did not converge: raise --ref-steps",
        )
        for name, ref in refs.items()
    ]
    targets += [
        target(
            "reference vs central finite differences (max relative difference) < 1e-5",
            worst_fd,
            worst_fd < 1e-5,
            "finite differences at --fd-eps are not accurate enough for this loss",
        ),
    ]
    converged = [r for r in records if r["sweep"] == "converged"]
    if converged:
        err = converged[0]["rel_err_ref"]
        targets.append(
            target(
                f"converged Implicit (T={converged[0]['T']}) relative error <= 1e-6",
                err,
                err <= 1e-6,
                "Implicit's linear solve (--linear-solver) did not reach --linear-tol",
            )
        )
    return targets


def _report(results: Results, refs, fd, targets) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = next(iter(refs.values()))  # the T-step procedures' forward (Unrolled's)

    records = [r for r in results.records if r["sweep"] == "T"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in sorted({r["backend"] for r in records}):
        rows = [r for r in records if r["backend"] == name]
        ts = [r["T"] for r in rows]
        axes[0].loglog(ts, [r["rel_err_ref"] for r in rows], "o-", label=name)
        if name != "unrolled":  # Unrolled against itself is 0
            axes[1].loglog(ts, [max(r["rel_err_unrolled"], 1e-16) for r in rows], "o-",
                           label=name)  # fmt: skip
    for name in sorted({r["backend"] for r in records}):
        rows = [r for r in records if r["backend"] == name]
        axes[2].loglog([r["T"] for r in rows], [r["residual"] for r in rows], "o-", label=name)
    titles = ["vs the true argmin's gradient", "vs Unrolled(T)'s gradient", "forward residual"]
    ylabels = ["relative gradient error", "relative gradient error (floored at 1e-16)",
               "final max |∇_y E|"]  # fmt: skip
    for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
        ax.set_xlabel("inner steps T")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    results.save_figure(
        fig,
        "accuracy_vs_steps",
        "Gradient error and forward residual vs T. Left: error against the gradient of the "
        "true argmin (the converged reference). Where the forward residual (right) is far "
        "from 0, every backend's gradient is far from it: Unrolled's and Checkpointed's are "
        "the exact gradients of the T-step procedure, a different function of θ than the "
        "argmin, and Implicit and Phantom differentiate at a point that is not the argmin. "
        'The errors fall as the residual does; the "converged" row of the table is '
        "Implicit run to tolerance.",
    )
    plt.close(fig)

    _plot_defaults(results)
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
        f"Reference: Implicit + LU, {ref['steps']} steps, tolerance 0, residual "
        f"{ref['residual']:.3g}, |g| = {np.linalg.norm(ref['grad']):.4g}. Finite differences "
        "along random unit directions of θ:\n\n"
        + markdown_table(fd, ["finite_difference", "implicit_lu", "relative_difference"])
    )
    _compare_references(results, refs)
    if ref["lr"] is not None:
        results.add_section(
            "Gradients w.r.t. the inner optimizer's raw lr and momentum: Implicit gives exactly "
            "zero by design (they do not move the fixed point); Unrolled and Truncated do not.\n\n"
            + markdown_table(records, ["backend", "T", "grad_lr", "grad_momentum"])
        )
    results.add_section(targets_section(targets))


def _compare_references(results: Results, refs: dict[str, dict[str, Any]]) -> None:
    """Whether the forward methods' converged references are the same argmin (the cosine of
    their gradients): where they are not, the energy has several stationary points on this
    batch and `rel_err_ref` compares each row with its own method's."""
    if len(refs) < 2:
        return
    (first, a), *others = refs.items()
    lines = [
        f"- {name} to tolerance (residual {b['residual']:.2g}) against {first} (residual "
        f"{a['residual']:.2g}): gradient cosine {cosine(b['grad'], a['grad']):.4g}, relative "
        f"difference {relative_error(b['grad'], a['grad']):.3g}"
        for name, b in others
    ]
    results.add_section(
        "One reference per forward method (rows are compared with their own method's). "
        "Where two references differ, the methods stopped at different stationary points of "
        "a non-convex energy (each a local argmin its own forward finds):\n\n" + "\n".join(lines)
    )


def _plot_defaults(results: Results) -> None:
    """Each backend's gradient error against T at `gtol = 0` (exactly T steps) and at its
    default settings (Unrolled: the paper's gtol 1e-3), and the default rows' table."""
    import matplotlib.pyplot as plt

    defaults = [r for r in results.records if r["sweep"] == "default"]
    if not defaults:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for color, name in enumerate(dict.fromkeys(r["backend"] for r in defaults)):
        for sweep, style, label in (("T", "o-", "gtol 0"), ("default", "s--", "default")):
            rows = [r for r in results.records if r["sweep"] == sweep and r["backend"] == name]
            ts = [r["T"] for r in rows]
            axes[0].loglog(ts, [max(r["rel_err_ref"], 1e-16) for r in rows], style,
                           color=f"C{color}", label=f"{name}, {label}")  # fmt: skip
            axes[1].semilogx(ts, [r["cos_ref"] for r in rows], style, color=f"C{color}")
    xlabel = "inner steps T (the cap, under a tolerance)"
    axes[0].set(xlabel=xlabel, ylabel="relative error vs the argmin's gradient (floor 1e-16)")
    axes[1].set(xlabel=xlabel, ylabel="cosine to the true argmin's gradient")
    axes[0].legend(fontsize=7)
    results.save_figure(
        fig,
        "accuracy_at_defaults",
        "Gradient error against T, every backend at gtol = 0 (solid: exactly T steps) and at "
        "its default settings (dashed: Unrolled and Truncated stop each set at the paper's "
        "gtol 1e-3, Implicit and Phantom run to their own tolerance with T as the cap). The "
        "two differ only where some set meets its tolerance before T. Where one does, its "
        "value is near the argmin, but the derivative of the iterates converges more slowly "
        "than the iterates, so the gradient of the stopped procedure, which Unrolled "
        "returns, can still be far from the argmin's.",
    )
    plt.close(fig)
    results.add_section(
        "At each backend's default settings (as a user gets it; Unrolled with the paper's "
        "gtol 1e-3):\n\n"
        + markdown_table(defaults, ["backend", "method", "T", "residual", "rel_err_ref", "cos_ref"])
    )


if __name__ == "__main__":
    main()
