"""Recommend a differentiation backend for a layer, from short probes on the user's data."""

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, Bool, Float

import solvers

from ._abstract import AbstractSolvedAggregation
from ._aggregation import EquilibriumAggregation
from ._training_probe import TrainingProbe, probe_displacement

MIN_PROGRESS = 0.05
"""The relative loss decrease below which the training probe counts as no progress (a
smaller one is within the noise of a few steps: 0.8 % ranked the median D = 1 layer's
candidates by chance)."""


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What [`eqx_agg.recommend_backend`][] returns.

    - `solver`: the recommended candidate, with the forward method it was probed with (the
      layer's own where the candidate had none), raising or reporting as the candidate does:
      pass it to `layer.with_solver`.
    - `name`: how the reasons and measurements name it, e.g. `"Unrolled(steps=10) [Nesterov]"`.
    - `reasons`: the measured facts the choice rests on, one sentence each.
    - `measurements`: one dict per candidate (`candidate`, `backend`, `method`, `T`, `k`, the
      forward's `residual`, the gradient's `cosine_to_exact`, a training step's `MB` and `ms`,
      and from the training probe `probe_loss`, `train_steps` (the steps it took) and
      `time_to_goal_s`), then one for the exact reference.
    """

    solver: solvers.AbstractBackend
    name: str
    reasons: list[str]
    measurements: list[dict[str, Any]]


def default_candidates() -> tuple[solvers.AbstractBackend, ...]:
    """The backends [`eqx_agg.recommend_backend`][] compares unless told otherwise, one or two
    of each kind, each with the layer's own forward method: the paper's Unrolled at `T` = 5
    and 10, Checkpointed at the same `T` (Unrolled's gradient, fewer stored states),
    Truncated(10, k=2), and, to tolerance, Implicit and Phantom (one step)."""
    return (
        solvers.Unrolled(5),
        solvers.Checkpointed(5),
        solvers.Unrolled(10),
        solvers.Checkpointed(10),
        solvers.Truncated(10, 2),
        solvers.Implicit(),
        solvers.Phantom(),
    )


def recommend_backend(
    layer: AbstractSolvedAggregation,
    x_batch: Float[Array, "b n d"],
    mask: Bool[Array, "b n"] | None = None,
    *,
    candidates: Sequence[solvers.AbstractBackend] | None = None,
    tol: float | None = None,
    agreement: float = 0.99,
    memory_budget: float | None = None,
    train_steps: int = 100,
    train_lr: float = 1e-3,
    slack: float = 0.1,
    separation: float = 0.25,
    repeats: int = 3,
    seed: int = 0,
    progress: bool | Callable[[str], Any] = False,
) -> Recommendation:
    """Probe `layer` on a batch of your sets with each candidate backend and recommend the
    one that trains fastest.

    Each candidate (a backend value; one built without `method=` runs the layer's own
    forward method: the layer's current one, learned lr and momentum included, when the
    candidate runs the same kind of forward, else the layer's default for that kind) is
    measured twice:

    1. **One gradient.** The probe loss is a fixed random linear functional of the layer's
       outputs; its gradient w.r.t. the layer's parameters (outside the solver) and the
       inputs `x_batch` (what an encoder before the layer receives) is compared, by cosine,
       with the exact gradient of the argmin (Implicit with a dense LU solve, the layer's
       forward to tolerance); the forward's largest residual, and the compiled memory and
       median time of a training step (forward, backward w.r.t. parameters and inputs, and
       Adam's update: what `memory_budget` compares) are recorded. A candidate whose
       residual is below `tol` (default: the layer's method's tolerance, or 1e-3) and whose
       cosine is at least `agreement` computes the argmin and its gradient; one that does
       not defines a different layer, which training learns as it runs it (trained with 2
       steps and evaluated with 5, the median model was 100× worse).
    2. **A short training run**, as the time-to-accuracy benchmark compares backends: each
       candidate within `memory_budget` (MB) trains with Adam (rate `train_lr`) on `x_batch`
       to move each set's output by one batch standard deviation in a random direction, for
       `train_steps` steps or, if sooner, the training time the fastest candidate per step
       took for them (equal time, as training is paid for: a slower candidate takes fewer
       steps). The goal is the lowest final loss among them, within `slack` of its progress;
       the candidate that reaches it in the least training time (compilation excluded) is
       recommended. When the runner-up is within `separation` of its time (25 %: Unrolled
       and Checkpointed at the same T, the same gradient, came 8–12 % apart in three probes
       of the median model), the reasons say that the probe cannot separate them; when no
       candidate lowers the loss by 5 % (`MIN_PROGRESS`), the fastest per step is kept and
       the reasons say what to change.

    **Arguments:**

    - `layer`: an EA layer or a transport layer (an [`eqx_agg.AbstractSolvedAggregation`][]).
      An EA layer's contraction penalty is left out: the probes train the aggregate, not
      the auxiliary loss.
    - `x_batch`: `[b, n, d]`, a representative batch; `mask`: optional `[b, n]`.
    - `candidates`: backend values (default [`eqx_agg.default_candidates`][]`()`).
    - `tol`, `agreement`, `memory_budget`: the thresholds above (`memory_budget` in MB, of a
      training step).
    - `train_steps`, `train_lr`, `slack`, `separation`: the training comparison above.
    - `repeats`: timed runs per probe; `seed`: of the probe functional and displacement.
    - `progress`: True to report each probe on stderr, or a function taking a message.

    **Returns:** a [`eqx_agg.Recommendation`][].
    """
    if x_batch.ndim != 3:
        raise ValueError(f"x_batch must have shape [b, n, d], got shape {x_batch.shape}")
    if mask is not None and mask.shape != x_batch.shape[:2]:
        raise ValueError(f"mask must have shape {x_batch.shape[:2]}, got shape {mask.shape}")
    candidates = default_candidates() if candidates is None else tuple(candidates)
    if not candidates:
        raise ValueError("candidates is empty: give at least one backend to compare")
    for candidate in candidates:
        if not isinstance(candidate, solvers.AbstractBackend):
            raise TypeError(
                "candidates must be solvers backends (e.g. solvers.Unrolled(10)), "
                f"got {candidate!r}"
            )
    if isinstance(layer, EquilibriumAggregation):
        layer = layer.with_contraction_weight(0.0)  # any candidate's forward will do
    say = _reporter(progress)
    bound = {}
    for i, candidate in enumerate(candidates):
        solver = _with_layer_method(layer, candidate)
        name = _name(solver)
        bound[name if name not in bound else f"{name} #{i + 1}"] = solver  # e.g. two lr
    method = layer.bound_solver().method
    tol = (method.tolerance or 1e-3) if tol is None else tol

    exact = layer.with_solver(solvers.Implicit(linear_solver="lu", throw=False)).solver
    say(f"recommend_backend: the exact gradient, {_name(exact)}")
    reference_probe = TrainingProbe(layer, exact, x_batch, mask, train_lr)
    displacement = probe_displacement(reference_probe.output, jax.random.PRNGKey(seed))
    reference = _measure(reference_probe, displacement, repeats=0)
    # the probes report rather than raise: they measure candidates that do not converge
    quiet = {name: dataclasses.replace(solver, throw=False) for name, solver in bound.items()}
    compiled, probes = {}, {}
    for name, solver in quiet.items():
        say(f"recommend_backend: one gradient with {name}")
        compiled[name] = TrainingProbe(layer, solver, x_batch, mask, train_lr)
        probes[name] = _measure(compiled[name], displacement, repeats)
        probes[name]["cosine_to_exact"] = _cosine(probes[name]["grad"], reference["grad"])
    reasons = [_gradient_reason(probes, reference, tol, agreement)]
    name = _by_training_probe(
        compiled, probes, displacement, memory_budget, train_steps, train_lr, slack,
        separation, say, reasons,
    )  # fmt: skip
    measurements = [_row(name, bound[name], p) for name, p in probes.items()]
    reference["cosine_to_exact"] = 1.0
    measurements.append(_row(f"exact reference: {_name(exact)}", exact, reference))
    return Recommendation(bound[name], name, reasons, measurements)


def _measure(probe: TrainingProbe, displacement, repeats: int) -> dict[str, Any]:
    """The probe gradient (flat), the largest forward residual, compiled MB and median ms."""
    grad, ms = probe.gradient_and_ms(displacement, repeats)
    return {"grad": grad, "residual": probe.residual, "MB": probe.megabytes, "ms": ms}


def _gradient_reason(probes, reference, tol: float, agreement: float) -> str:
    """Which candidates computed the argmin and its gradient, as a sentence."""
    exact = [
        name
        for name, p in probes.items()
        if p["residual"] < tol and p["cosine_to_exact"] >= agreement
    ]
    if reference["residual"] >= tol:
        return (
            f"the forward to tolerance did not converge on this batch (residual "
            f"{reference['residual']:.2g} >= tol={tol:g}), so no candidate's gradient can be "
            "checked against the argmin's; each candidate is a different layer"
        )
    if not exact:
        return (
            f"no candidate computed the argmin (residual < tol={tol:g}) with its gradient "
            f"(cosine to the exact one >= agreement={agreement}): each is a different layer"
        )
    return (
        f"{', '.join(exact)} computed the argmin (residual < tol={tol:g}) and its gradient "
        f"(cosine to the exact one >= agreement={agreement})"
    )


def _by_training_probe(
    compiled, probes, displacement, memory_budget, train_steps, lr, slack, separation, say,
    reasons,
) -> str:  # fmt: skip
    """The name of the candidate that trains fastest to the goal (see `recommend_backend`),
    each trained with its probe in `compiled`; appends the reasons."""
    names = [n for n in compiled if memory_budget is None or probes[n]["MB"] <= memory_budget]
    if not names:
        names = [min(compiled, key=lambda n: probes[n]["MB"])]
        reasons.append(
            f"no candidate fits memory_budget={memory_budget:g} MB; {names[0]} needs the "
            f"least, {probes[names[0]]['MB']:.1f} MB"
        )
    elif len(names) < len(compiled):
        reasons.append(
            f"left out over memory_budget={memory_budget:g} MB: "
            + ", ".join(f"{n} ({probes[n]['MB']:.1f} MB)" for n in compiled if n not in names)
        )
    names.sort(key=lambda n: probes[n]["ms"])  # the fastest per step sets the time budget
    budget = math.inf
    for name in names:
        say(f"recommend_backend: training with {name} for {train_steps} steps"
            + ("" if math.isinf(budget) else f" or {budget:.3g} s"))  # fmt: skip
        curve = compiled[name].train(displacement, train_steps, budget)
        budget = curve["seconds"][-1] if name == names[0] else budget
        probes[name]["curve"] = curve
        probes[name]["probe_loss"] = curve["losses"][-1]
        probes[name]["train_steps"] = len(curve["losses"]) - 1
    start = probes[names[0]]["curve"]["losses"][0]
    best_name = min(names, key=lambda n: _finite(probes[n]["probe_loss"]))
    best = probes[best_name]["probe_loss"]
    if not best < start * (1 - MIN_PROGRESS):
        fastest = min(names, key=lambda n: probes[n]["ms"])
        advice = (
            "every candidate's loss rose, its steps overshoot: lower train_lr"
            if best > start
            else "raise train_steps or train_lr"
        )
        reasons.append(
            f"no candidate lowered the training probe's loss ({start:.4g}) by "
            f"{MIN_PROGRESS:.0%} (lowest final {best:.4g}) in at most {train_steps} steps "
            f"(train_lr={lr:g}): the probe cannot rank them, so the fastest per step is kept, "
            f"{fastest} ({probes[fastest]['ms']:.3g} ms per training step); {advice} for a "
            "firmer answer"
        )
        return fastest
    goal = best + slack * (start - best)
    for name in names:
        probes[name]["time_to_goal_s"] = _time_to(probes[name]["curve"], goal)
    ranked = sorted(names, key=lambda n: probes[n]["time_to_goal_s"])
    choice = ranked[0]
    reasons.append(
        f"trained with Adam (lr={lr:g}) on this batch to move each output by a random batch "
        f"standard deviation, each for {train_steps} steps or the {budget:.3g} s of training "
        f"that {names[0]}, the fastest per step, took for them (steps taken: "
        + ", ".join(f"{n} {probes[n]['train_steps']}" for n in names)
        + f"), {best_name} reached the lowest loss, {best:.4g} from {start:.4g}; the goal is "
        f"that loss within slack={slack:g} of its progress, {goal:.4g}"
    )
    reasons.append(
        "; ".join(f"{n} {_reached(probes[n]['time_to_goal_s'])}" for n in ranked)
        + f" (training time, compilation excluded): {choice} is the soonest"
    )
    if len(ranked) > 1:
        first, second = (probes[n]["time_to_goal_s"] for n in ranked[:2])
        if second <= (1 + separation) * first:
            reasons.append(
                f"the probe cannot separate {choice} from {ranked[1]}: their times to the "
                f"goal are within separation={separation:g} of each other; either serves"
            )
    return choice


def _with_layer_method(
    layer: AbstractSolvedAggregation, candidate: solvers.AbstractBackend
) -> solvers.AbstractBackend:
    """`candidate` with the layer's forward method where it has none: the layer's current
    one (its learned parameters) when both run the same kind of forward, else the layer's
    default for the candidate's kind."""
    if candidate.method is not None:
        return candidate
    current = layer.bound_solver()
    if current.runs_to_tolerance == candidate.runs_to_tolerance:
        return candidate.with_method(current.method)
    return layer.with_solver(candidate).solver


def _name(solver: solvers.AbstractBackend) -> str:
    """E.g. `"Truncated(steps=20, k=2) [Nesterov]"`."""
    options = [f"steps={solver.steps}"] + [
        f"{field}={getattr(solver, field)}"
        for field in ("k", "damping", "checkpoints")
        if getattr(solver, field, None) is not None
    ]
    return f"{type(solver).__name__}({', '.join(options)}) [{type(solver.method).__name__}]"


def _row(name: str, solver: solvers.AbstractBackend, probe: dict[str, Any]) -> dict[str, Any]:
    """A measurement row of the recommendation."""
    return {
        "candidate": name,
        "backend": type(solver).__name__.lower(),
        "method": type(solver.method).__name__,
        "T": solver.steps,
        "k": getattr(solver, "k", None),
        **{key: probe[key] for key in ("residual", "cosine_to_exact", "MB", "ms")},
        **{
            key: probe[key]
            for key in ("probe_loss", "train_steps", "time_to_goal_s")
            if key in probe
        },
    }


def _time_to(curve: dict[str, list[float]], goal: float) -> float:
    """Training seconds until the loss first reached `goal` (inf if it never did)."""
    return next(
        (s for loss, s in zip(curve["losses"], curve["seconds"], strict=True) if loss <= goal),
        math.inf,
    )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _reached(seconds: float) -> str:
    """How a candidate fared against the goal, as a sentence fragment."""
    return "never reached the goal" if math.isinf(seconds) else f"reached it in {seconds:.3g} s"


def _reporter(progress: bool | Callable[[str], Any]) -> Callable[[str], Any]:
    if callable(progress):
        return progress
    if progress:
        return lambda message: print(message, file=sys.stderr, flush=True)
    return lambda message: None


def _cosine(g: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of two flat gradients (0 when either is zero)."""
    norms = np.linalg.norm(g) * np.linalg.norm(reference)
    return float(g @ reference / norms) if norms > 0 else 0.0
