"""Wall time of each backend's compiled forward+backward vs the inner steps T, beside sum and
attention pooling and PyTorch Geometric's EquilibriumAggregation.

Each configuration is compiled ahead of time and run once to warm up; then every configuration
is timed once per round (block_until_ready), for --repeats rounds, so that a slow spell of the
machine falls on all of them alike; the median is reported, in ms. The baselines are sum
pooling and 4-head attention pooling of the same width after a residual-MLP encoder with the
potential's hidden widths, and PyG's layer at the same sizes (skipped with a message without
the 'peers' extra). Ratios are taken within one run. Every backend row also says what it
computed, measured apart from the timed runs: the fraction of sets whose forward converged
and, for Implicit, how many sets' backward linear solves failed. For EA, `floor` is each row's
time over T + 1 evaluations of the inner gradient `∇_y E` for the whole batch (what the forward
and backward cost beyond the gradients of a T-step forward). Time only on a quiet machine.

examples:
  python -m benchmarks timing
  python -m benchmarks timing --size counting --repeats 9
  python -m benchmarks timing --size molpcba --regularisation 10 --implicit-steps 100
  python -m benchmarks timing --layer rotp --inner-steps 4 10 50
"""

import statistics
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

import eqx_agg

from ..shared import cli, strategies
from ..shared.peers import pyg
from ..shared.results import Results, progress, target, targets_section
from . import problem

ABOUT = (
    "Median wall time (ms) of one compiled forward+backward of the median model per backend "
    "and number of inner steps T, beside sum and attention pooling and PyTorch Geometric's "
    "EquilibriumAggregation. `vs_*` columns are time ratios within this run. `converged` is "
    "the fraction of sets whose forward met its tolerance; `backward_failed` (Implicit) the "
    "sets whose backward linear solve failed: a fast Implicit whose forward did not converge "
    "returned an approximate gradient. `floor` (EA): the time over T + 1 inner-gradient "
    "evaluations for the batch (`gradient_ms`, timed apart)."
)


class PoolingModel(eqx.Module):
    """Baseline: residual-MLP encoder per element, a pooling, the EA model's decoder.
    `pooling` is an `eqx_agg.pooling` module of output width `out_size`."""

    encoder: eqx_agg.ResidualMLP
    pooling: eqx_agg.AbstractAggregation
    readout: eqx_agg.ResidualMLP

    def __init__(
        self, pooling_name, in_size, out_size, widths, readout_widths, *, key: PRNGKeyArray
    ):
        k_encoder, k_pool, k_readout = jax.random.split(key, 3)
        self.encoder = eqx_agg.ResidualMLP(in_size, (*widths[:-1], out_size), key=k_encoder)
        self.pooling = eqx_agg.make_pooling(pooling_name, out_size, key=k_pool)
        self.readout = eqx_agg.ResidualMLP(out_size, (*readout_widths, 1), key=k_readout)

    def __call__(self, x: Float[Array, "n d"]) -> Scalar:
        return self.readout(self.pooling(jax.vmap(self.encoder)(x)))[0]


def pooling_loss(model: PoolingModel, x: Float[Array, "b n d"], labels: Float[Array, " b"]):
    """Mean squared error of a baseline's predictions."""
    return jnp.mean((jax.vmap(model)(x) - labels) ** 2)


def interleaved_times(calls: dict[Any, Callable[[], Any]], repeats: int, quiet: bool = False):
    """Warm up every call once, then time each once per round for `repeats` rounds (so that
    the machine's slow spells fall on every call alike): `{key: {"ms": median, "repeats_ms":
    [...]}}`. A call blocks until its result is ready."""
    for call in calls.values():
        call()
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in progress(range(repeats), "timed rounds", quiet=quiet):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(1e3 * (time.perf_counter() - start))
    return {key: {"ms": statistics.median(t), "repeats_ms": t} for key, t in times.items()}


def _blocking(fn, *args) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def inner_gradient(model, x: Float[Array, "b n d"]):
    """One evaluation of the inner gradient `∇_y E` for every set of the batch, as each inner
    step makes it (the elements prepared once, before the steps): `(fn, args)` to time."""
    h = x if model.encoder is None else jax.vmap(jax.vmap(model.encoder))(x)
    energy = model.pool.energy
    b, n, d = h.shape
    ids, mask = jnp.zeros(n, jnp.int32), jnp.ones(n, bool)
    elements = jax.vmap(lambda h: energy.prepare(h, ids, 1, mask))(h)
    y = jnp.zeros((b, 1, energy.aggregate_size(d)), h.dtype)

    @eqx.filter_jit
    def gradient(energy, elements, y):
        def one(elements, y):
            return jax.grad(lambda y: jnp.sum(energy.prepared_energies(elements, y, ids, mask)))(y)

        return jax.vmap(one)(elements, y)

    return gradient, (energy, elements, y)


def _parser():
    parser = cli.parser("timing", __doc__)
    problem.add_problem_flags(parser, layers=True)
    problem.add_sweep_flags(parser)
    group = parser.add_argument_group("timing")
    group.add_argument("--repeats", type=cli.positive_int, default=5, help="timed runs")
    group.add_argument(
        "--implicit-steps", type=cli.positive_int, default=None,
        help="the step cap of Implicit and Phantom (they stop each set at its tolerance; "
        "default: T)",
    )  # fmt: skip
    group.add_argument("--no-peers", action="store_true", help="skip PyTorch Geometric")
    return parser


QUICK = dict(inner_steps=[1, 4], repeats=2, out_size=4)  # 4 attention heads


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/timing/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    model, x, labels = problem.problem_from_args(args)
    results = Results("timing", problem.config_of(args), args.out, ABOUT)
    peer_missing = "PyG peer skipped: --no-peers" if args.no_peers else pyg.available()
    if args.layer != "ea":
        peer_missing = f"PyG peer skipped: it has no {args.layer.upper()} layer"
    if peer_missing:
        print(peer_missing)

    runs: list[tuple[str, int | None]] = [("sum", None), ("attention", None)]
    runs += [(name, t) for t in args.inner_steps for name in args.backends]
    runs += [] if peer_missing else [("pyg", t) for t in args.inner_steps]
    calls, rows = {}, {}
    if args.layer == "ea":
        gradient, gradient_args = inner_gradient(model, x)
        calls["gradient", None] = _blocking(gradient, *gradient_args)
    for name, steps in progress(runs, "compiling", quiet=args.quiet):
        row = dict(model=name, T=steps)
        if name == "pyg":
            calls[name, steps], versions = pyg.pyg_step(
                args.batch, args.set_size, args.in_size, args.out_size, tuple(args.widths),
                tuple(args.readout), steps, args.dtype, args.seed,
            )  # fmt: skip
            row.update(versions)
        elif name in ("sum", "attention"):
            baseline = PoolingModel(
                name, args.in_size, args.out_size, tuple(args.widths), tuple(args.readout),
                key=jax.random.PRNGKey(args.seed),
            )  # fmt: skip
            baseline = problem.cast(baseline, x.dtype)
            compiled, params = problem.compiled_loss_and_grad(baseline, x, labels, pooling_loss)
            calls[name, steps] = _blocking(compiled, params, x, labels)
        else:
            solver = problem.sweep_backend(args, name, steps, throw=False)
            if solver.runs_to_tolerance and args.implicit_steps:
                solver = solver.with_steps(args.implicit_steps)
            candidate = problem.with_solver(model, solver)
            compiled, params = problem.compiled_loss_and_grad(candidate, x, labels)
            calls[name, steps] = _blocking(compiled, params, x, labels)
            described = strategies.describe(candidate.pool.solver)
            row.update(method=described["method"], k=described["k"])
            row.update(problem.diagnose(candidate, x, labels))
        rows[name, steps] = row
    measured = interleaved_times(calls, args.repeats, quiet=args.quiet)
    gradient_ms = measured.pop(("gradient", None), {}).get("ms")
    for key, row in rows.items():
        row.update(measured[key])
        if gradient_ms is not None and row["model"] in args.backends:
            row["floor"] = row["ms"] / ((row["T"] + 1) * gradient_ms)
        results.add(**row)
    ratios = ratios_of(results.records)
    for record in results.records:
        record.update(ratios.get((record["model"], record["T"]), {}))
    targets = targets_of(results.records)
    _report(results, targets, peer_missing)
    results.write(
        [
            "model",
            "method",
            "T",
            "k",
            "ms",
            "vs_unrolled",
            "vs_sum",
            "vs_attention",
            "floor",
            "converged",
            "backward_failed",
        ],  # fmt: skip
        extra={"targets": targets, "peer_skipped": peer_missing, "gradient_ms": gradient_ms},
    )
    return results


def ratios_of(records: list[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, float]]:
    """Per row: time relative to Unrolled at the same T, to sum pooling, to attention."""
    ms = {(r["model"], r["T"]): r["ms"] for r in records}
    ratios = {}
    for (model, steps), value in ms.items():
        row = {}
        if ("unrolled", steps) in ms and model != "unrolled":
            row["vs_unrolled"] = value / ms["unrolled", steps]
        for base in ("sum", "attention"):
            if (base, None) in ms and model != base:
                row[f"vs_{base}"] = value / ms[base, None]
        ratios[model, steps] = row
    return ratios


def targets_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The time targets at every T: Implicit no slower than Unrolled, and at most half its
    time where Implicit's forward converged (and its backward did not fail); PyG vs ours."""
    by_key = {(r["model"], r["T"]): r for r in records}
    targets = []
    for (model, steps), row in by_key.items():
        if ("unrolled", steps) not in by_key:
            continue
        ours = by_key["unrolled", steps]["ms"]
        if model == "implicit":
            ratio = row["ms"] / ours
            valid = _comparable(row)
            what = "converged forward" if valid else f"{row.get('converged', 0):.0%} converged"
            why = (
                "its fixed costs (a final gradient, the linear solve's set-up, one VJP "
                "through the parameters) exceed the few unrolled steps they replace"
                if valid
                else "not comparable: its forward did not converge on every set (or its "
                "backward failed), so this is not the time of an implicit gradient"
            )
            targets.append(
                target(
                    f"Implicit fwd+bwd at T={steps} <= 0.5x Unrolled's ({what})",
                    ratio,
                    valid and ratio <= 0.5,
                    why,
                )
            )
        if model == "pyg":
            speedup = row["ms"] / ours
            targets.append(
                target(
                    f"our Unrolled >= 2x faster than PyG at T={steps} (PyG/ours)",
                    speedup,
                    speedup >= 2,
                    "XLA's CPU step costs more than torch's eager step at these small sizes",
                )
            )
    return targets


def _comparable(row: dict[str, Any]) -> bool:
    """Whether a row's time is that of its backend's gradient: every set's forward converged
    and the backward did not fail, for a backend that runs to tolerance (always, for one
    that differentiates its steps, and for the poolings)."""
    name = row["model"]
    if name not in strategies.BACKENDS or not strategies.make_backend(name, 1).runs_to_tolerance:
        return True
    return row.get("converged") == 1.0 and not row.get("backward_failed")


def _report(results: Results, targets, peer_missing: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["model"] for r in results.records):
        rows = [r for r in results.records if r["model"] == name]
        if rows[0]["T"] is None:
            ax.axhline(rows[0]["ms"], linestyle=":", color="gray" if name == "sum" else "k",
                       label=f"{name} pooling")  # fmt: skip
        else:
            (line,) = ax.loglog([r["T"] for r in rows], [r["ms"] for r in rows], "-", label=name)
            for row in rows:
                ok = _comparable(row)
                ax.plot(row["T"], row["ms"], "o" if ok else "x", color=line.get_color(),
                        markersize=5 if ok else 9)  # fmt: skip
    ax.set_xlabel("inner steps T")
    ax.set_ylabel("forward+backward time (ms, median)")
    ax.legend()
    results.save_figure(
        fig,
        "time_vs_steps",
        "Compiled forward+backward time vs T. A cross marks a backend that needs a converged "
        "forward where it did not converge on every set (or its backward failed): that time "
        "is not the time of its gradient.",
    )
    plt.close(fig)
    notes = f"\n\n{peer_missing}" if peer_missing else ""
    results.add_section(targets_section(targets) + notes)
