"""Forward methods to tolerance: steps and wall time of each method until every set of a
batch meets the tolerance.

Each method runs under `Implicit` (a `while_loop` that stops each set at its tolerance, at
most `--cap` steps) on the suite's problem: `--problem random` is ten untrained
`Neural(3, 4)` potentials with a set of 37 standard-normal elements each (float64,
tolerance 1e-8); `--problem layer` is the median model's EA layer at `--size median`,
`counting` or `molpcba` (float32, tolerance 1e-4) on standard-normal elements. The forward
alone is compiled and timed (interleaved rounds, median), after a warm-up; steps are the
most any set took, and `converged` the fraction of sets that met the tolerance.

examples:
  python -m benchmarks forward
  python -m benchmarks forward --problem layer --size counting
  python -m benchmarks forward --problem layer --size molpcba --methods newton nesterov
"""

import statistics
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import eqx_agg
import solvers

from ..shared import cli
from ..shared.results import Results, progress
from . import problem

ABOUT = (
    "Steps and time until every set meets the forward method's tolerance (under Implicit's "
    "while-loop): `steps` the most any set took, `ms` the median compiled forward time, "
    "`converged` the fraction of sets that met the tolerance within the cap (a method that "
    "did not converge is slower than its `ms` says)."
)

METHODS = {
    "nesterov": lambda: solvers.Nesterov(gtol=None, restart=True),
    "newton": solvers.Newton,
    "anderson": solvers.Anderson,
}
"""The forward methods for learned energies, by name (Nesterov with Implicit's keyword
default: momentum restart)."""


def _parser():
    parser = cli.parser("forward", __doc__)
    problem.add_problem_flags(parser)
    group = parser.add_argument_group("forward")
    group.add_argument(
        "--problem", choices=["random", "layer"], default="random",
        help="ten random Neural(3, 4) potentials (float64), or the median model's layer",
    )  # fmt: skip
    group.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
        help="the forward methods compared",
    )  # fmt: skip
    group.add_argument("--cap", type=cli.positive_int, default=2000, help="steps at most")
    group.add_argument("--repeats", type=cli.positive_int, default=5, help="timed rounds")
    return parser


QUICK = dict(repeats=1, cap=300)


def random_problems(count: int = 10, set_size: int = 37):
    """`count` untrained `Neural(3, 4)` layers and one standard-normal set each."""
    for seed in range(count):
        energy = eqx_agg.energies.Neural(3, 4, (16, 8), key=jax.random.PRNGKey(seed))
        x = jax.random.normal(jax.random.PRNGKey(1000 + seed), (set_size, 3))
        yield seed, eqx_agg.EquilibriumAggregation(energy, solvers.Unrolled(1)), x[None]


def layer_problems(args):
    """The median model's EA layer and a batch of standard-normal element sets."""
    model, x, _ = problem.problem_from_args(args)
    h = jax.random.normal(jax.random.PRNGKey(args.seed + 7), (*x.shape[:2], args.in_size))
    yield args.size, model.pool, h.astype(x.dtype)


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/forward/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    if args.problem == "random":  # the problems: float64, tolerance 1e-8
        args.dtype = "float64"
        jax.config.update("jax_enable_x64", True)
    results = Results("forward", problem.config_of(args), args.out, ABOUT)
    problems = list(random_problems() if args.problem == "random" else layer_problems(args))
    calls, rows = {}, {}
    runs = [(name, p) for p in problems for name in args.methods]
    for name, (label, layer, x) in progress(runs, "compiling", quiet=args.quiet):
        candidate = layer.with_solver(solvers.Implicit(args.cap, method=METHODS[name](),
                                                       throw=False))  # fmt: skip
        forward = eqx.filter_jit(lambda layer, x: jax.vmap(layer.solve)(x).stats)
        stats = jax.block_until_ready(forward(candidate, x))
        calls[name, label] = lambda f=forward, c=candidate, x=x: jax.block_until_ready(f(c, x))
        rows[name, label] = dict(
            method=name,
            problem=label,
            tolerance=candidate.solver.method.resolve(x.dtype).tolerance,
            steps=int(jnp.max(stats.num_steps)),
            converged=float(jnp.mean(stats.converged)),
        )
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in progress(range(args.repeats), "timed rounds", quiet=args.quiet):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(1e3 * (time.perf_counter() - start))
    for key, row in rows.items():
        results.add(**row, ms=statistics.median(times[key]))
    results.add_section(_summary(results.records))
    results.write(["method", "problem", "tolerance", "steps", "converged", "ms"])
    return results


def _summary(records: list[dict[str, Any]]) -> str:
    """Per method: the range of steps and the total time over the problems."""
    lines = ["Per method, over the problems:\n"]
    for name in dict.fromkeys(r["method"] for r in records):
        rows = [r for r in records if r["method"] == name]
        steps = [r["steps"] for r in rows]
        converged = sum(r["converged"] == 1.0 for r in rows)
        lines.append(
            f"- {name}: {min(steps)}–{max(steps)} steps, converged on {converged} of "
            f"{len(rows)}, {sum(r['ms'] for r in rows):.1f} ms in all"
        )
    return "\n".join(lines)
