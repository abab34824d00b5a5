"""Recommend a differentiation backend for a layer, from short probes on the user's data."""

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float

import solvers

from ._abstract import AbstractSolvedAggregation
from ._training_probe import probe_displacement, training_probe


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """What [`eqx_agg.recommend_backend`][] returns.

    - `backend`: `"implicit"`, `"unrolled"` or `"truncated"`; `steps`: inner steps `T`;
      `k`: taped steps (Truncated only, else None).
    - `solver`: that backend, built with the layer's forward method and `throw=True` (it
      raises as the layer's own solver does): pass it to the layer.
    - `reasons`: the measured facts the choice rests on, one sentence each.
    - `measurements`: one dict per probe (backend, T, k, residual, cosine, MB, ms and, for
      the candidates trained, `probe_loss` and `time_to_goal_s`).
    """

    backend: str
    steps: int
    k: int | None
    solver: solvers.AbstractBackend
    reasons: list[str]
    measurements: list[dict[str, Any]]


def recommend_backend(
    layer: AbstractSolvedAggregation,
    x_batch: Float[Array, "b n d"],
    mask: Bool[Array, "b n"] | None = None,
    *,
    steps: Sequence[int] = (5, 10, 20, 50),
    ks: Sequence[int] = (1, 2, 5),
    tol: float | None = None,
    agreement: float = 0.99,
    memory_budget: float | None = None,
    train_steps: int = 100,
    train_lr: float = 1e-3,
    slack: float = 0.1,
    repeats: int = 3,
    seed: int = 0,
    progress: bool | Callable[[str], Any] = False,
) -> Recommendation:
    """Probe `layer` on a batch of your sets and recommend a backend, `T` and `k`.

    The probe loss is a fixed random linear functional of the layer's outputs. Its gradient
    w.r.t. the layer's parameters (outside the solver) and the inputs `x_batch` (what an
    encoder before the layer receives) is computed with each backend, every one running the
    layer's own forward method (its lr, momentum, tolerance). For each `T` in `steps` the
    probes measure the forward residual, the compiled forward+backward memory and median
    time, and the cosine similarity of each gradient to Unrolled's at the largest `T`.

    Rule: the smallest `T` whose residual is below `tol` (default: the method's tolerance,
    or 1e-3) counts as converged; there Implicit is recommended if its gradient agrees
    (cosine ≥ `agreement`) with Unrolled's at the largest `T`, since its memory does not
    grow with `T`. Otherwise the inner problem is not solved within `steps` (the usual case
    for a learned potential), Implicit's gradient is not that of the computed output (trained
    with it, the median task's model never reached Unrolled's error), and every `T` is a
    different layer that training learns as it runs it (trained with 2 steps and evaluated
    with 5, it was 100× worse). So the candidates are compared the way the time-to-accuracy
    benchmark compares them, in a short training run: each Unrolled(T) trains `train_steps`
    Adam steps (rate `train_lr`) on `x_batch` to move each set's output by one batch
    standard deviation in a random direction; the goal is the lowest
    final loss among them, within `slack` of its progress; Unrolled at the `T` that reaches
    it in the least training time is kept, unless a Truncated(T, k), k in `ks`, reaches it
    sooner. Candidates over `memory_budget` MB are left out.

    **Arguments:**

    - `layer`: an EA layer or a transport layer (an [`eqx_agg.AbstractSolvedAggregation`][]).
    - `x_batch`: `[b, n, d]`, a representative batch; `mask`: optional `[b, n]`.
    - `steps`, `ks`: candidate `T` and Truncated `k`.
    - `tol`, `agreement`, `memory_budget`: the thresholds above (`memory_budget` in MB).
    - `train_steps`, `train_lr`, `slack`: the training comparison above.
    - `repeats`: timed runs per probe; `seed`: of the probe functional.
    - `progress`: True to report each probe on stderr, or a function taking a message.

    **Returns:** a [`eqx_agg.Recommendation`][].
    """
    if x_batch.ndim != 3:
        raise ValueError(f"x_batch must have shape [b, n, d], got shape {x_batch.shape}")
    if mask is not None and mask.shape != x_batch.shape[:2]:
        raise ValueError(f"mask must have shape {x_batch.shape[:2]}, got shape {mask.shape}")
    if not steps or min(steps) < 1 or (ks and min(ks) < 1):
        raise ValueError(f"steps and ks must be positive ints, got {steps} and {ks}")
    say = _reporter(progress)
    steps = sorted(steps)
    method = layer.solver.method
    tol = (method.tolerance or 1e-3) if tol is None else tol
    out = jax.eval_shape(jax.vmap(layer), x_batch, mask)
    cotangent = jax.random.normal(jax.random.PRNGKey(seed), out.shape, out.dtype)
    probes: dict[tuple[str, int, int | None], dict[str, Any]] = {}

    def probe(name: str, t: int, k: int | None = None) -> dict[str, Any]:
        if (name, t, k) not in probes:
            say(f"recommend_backend: probing {_label(name, t, k)}")
            solver = _backend(name, t, k, method)
            probes[name, t, k] = _probe(layer, solver, x_batch, mask, cotangent, repeats)
        return probes[name, t, k]

    for t in steps:
        for name in ("unrolled", "implicit"):
            probe(name, t)
    largest = steps[-1]
    target = probes["unrolled", largest, None]["grad"]
    cos = {key: _cosine(p["grad"], target) for key, p in probes.items()}
    residual = {t: probes["unrolled", t, None]["residual"] for t in steps}
    reasons: list[str] = []
    choice: tuple[str, int, int | None] | None = None
    converged = [t for t in steps if residual[t] < tol]
    if converged:
        t = converged[0]
        implicit, unrolled = probes["implicit", t, None], probes["unrolled", t, None]
        reasons.append(f"the forward converged at T={t}: residual {residual[t]:.2g} < tol={tol:g}")
        if cos["implicit", t, None] >= agreement:
            choice = ("implicit", t, None)
            reasons.append(
                f"Implicit's gradient agrees with Unrolled(T={largest})'s: cosine "
                f"{cos['implicit', t, None]:.4f} >= agreement={agreement}"
            )
            reasons.append(
                f"Implicit needs {implicit['MB']:.1f} MB ({implicit['MB'] / unrolled['MB']:.2f}x "
                f"Unrolled's) and {implicit['ms']:.1f} ms ({implicit['ms'] / unrolled['ms']:.2f}x) "
                f"at T={t}, and its memory does not grow with T"
            )
        else:
            reasons.append(
                f"but Implicit's gradient disagrees with Unrolled(T={largest})'s: cosine "
                f"{cos['implicit', t, None]:.4f} < agreement={agreement}"
            )
    else:
        reasons.append(
            f"the forward did not converge at any T in steps (residual {residual[largest]:.2g} "
            f">= tol={tol:g} at T={largest}), so Implicit's gradient is not the gradient of "
            "the computed output"
        )
    if choice is None:
        choice = _by_training_probe(
            layer, x_batch, mask, cotangent, steps, ks, probes, memory_budget, train_steps,
            train_lr, slack, seed, say, reasons,
        )  # fmt: skip
    measurements = [
        {
            "backend": name,
            "T": t,
            "k": k,
            "residual": p["residual"],
            "cosine_to_unrolled_max_T": _cosine(p["grad"], target),
            "MB": p["MB"],
            "ms": p["ms"],
            **{key: p[key] for key in ("probe_loss", "time_to_goal_s") if key in p},
        }
        for (name, t, k), p in probes.items()
    ]
    name, t, k = choice
    solver = _backend(name, t, k, method, throw=True)  # the layer's loud failures kept
    return Recommendation(name, t, k, solver, reasons, measurements)


def _by_training_probe(
    layer, x, mask, cotangent, steps, ks, probes, memory_budget, train_steps, lr, slack, seed,
    say, reasons,
) -> tuple[str, int, int | None]:  # fmt: skip
    """The backend that trains fastest when the forward does not converge: each candidate
    trains `train_steps` steps to move its outputs by the same random displacement; the goal
    is the best final loss of an Unrolled(T) within `slack` of the progress it made; Unrolled
    at the T that gets there first, then a Truncated(T, k) if one gets there sooner. Appends
    the reasons."""
    displacement = probe_displacement(layer, x, mask, jax.random.PRNGKey(seed + 1))

    def fit(name, t, k=None) -> dict[str, Any]:
        probe = probes.setdefault((name, t, k), {})
        if "curve" not in probe:
            say(f"recommend_backend: training {_label(name, t, k)} for {train_steps} steps")
            solver = _backend(name, t, k, layer.solver.method)
            probe["curve"] = training_probe(layer, solver, x, mask, displacement, train_steps, lr)
            probe["probe_loss"] = probe["curve"]["losses"][-1]
            if "MB" not in probe:
                probe.update(_probe(layer, solver, x, mask, cotangent, repeats=1))
        return probe

    fits = {t: fit("unrolled", t) for t in steps}
    best_t = min(steps, key=lambda t: _finite(fits[t]["probe_loss"]))
    start, best = fits[best_t]["curve"]["losses"][0], fits[best_t]["probe_loss"]
    if not best < start:
        reasons.append(
            f"no Unrolled(T) lowered the loss of the training probe in {train_steps} steps "
            f"(train_lr={lr:g}): the probe cannot rank them, so the smallest T, the cheapest, "
            "is kept; raise train_steps or lower train_lr for a firmer answer"
        )
        return ("unrolled", steps[0], None)
    goal = best + slack * (start - best)
    for probe in fits.values():
        probe["time_to_goal_s"] = _time_to(probe["curve"], goal)
    fits_budget = [t for t in steps if memory_budget is None or fits[t]["MB"] <= memory_budget] or [
        min(steps, key=lambda t: fits[t]["MB"])
    ]
    t = min(fits_budget, key=lambda t: fits[t]["time_to_goal_s"])
    reasons.append(
        "each T then defines a different layer, which training learns as it runs it, so the "
        f"candidates were compared by training: {train_steps} Adam steps (lr={lr:g}) on this "
        "batch moving each output by a random batch standard deviation; "
        f"Unrolled(T={best_t}) reached the lowest loss, {best:.4g} from {start:.4g}, and the "
        f"goal is that loss within slack={slack:g} of its progress, {goal:.4g}"
    )
    reasons.append(
        "Unrolled "
        + ", ".join(f"at T={s} {_reached(fits[s]['time_to_goal_s'])}" for s in steps)
        + f" (training time): T={t} is the soonest"
        + ("" if len(fits_budget) == len(steps) else f" within memory_budget={memory_budget}")
    )
    choice = ("unrolled", t, None)
    truncated = []
    for k in sorted(ks):
        if k < t:
            probe = fit("truncated", t, k)
            probe["time_to_goal_s"] = _time_to(probe["curve"], goal)
            truncated.append(probe | {"k": k})
    truncated = [p for p in truncated if memory_budget is None or p["MB"] <= memory_budget]
    if truncated:
        fastest = min(truncated, key=lambda p: p["time_to_goal_s"])
        reasons.append(
            f"Truncated(T={t}) "
            + ", ".join(f"with k={p['k']} {_reached(p['time_to_goal_s'])}" for p in truncated)
        )
        if fastest["time_to_goal_s"] < fits[t]["time_to_goal_s"]:
            choice = ("truncated", t, fastest["k"])
    return choice


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


def _label(name: str, t: int, k: int | None) -> str:
    return f"{name.capitalize()}(T={t}{'' if k is None else f', k={k}'})"


def _reporter(progress: bool | Callable[[str], Any]) -> Callable[[str], Any]:
    if callable(progress):
        return progress
    if progress:
        return lambda message: print(message, file=sys.stderr, flush=True)
    return lambda message: None


def _backend(
    name: str, t: int, k: int | None, method, throw: bool = False
) -> solvers.AbstractBackend:
    """Backend `name` with the layer's forward method; the probes report (`throw=False`)
    rather than raise."""
    if name == "unrolled":
        return solvers.Unrolled(t, method=method, throw=throw)
    if name == "implicit":
        return solvers.Implicit(t, method=method, throw=throw)
    return solvers.Truncated(t, k, method=method, throw=throw)


def _probe(layer, solver, x, mask, cotangent, repeats: int) -> dict[str, Any]:
    """The probe gradient (flat), the largest forward residual, compiled MB and median ms."""
    candidate = eqx.tree_at(lambda m: m.solver, layer, solver)
    params, static = eqx.partition(candidate, eqx.is_array)

    def gradient_and_residual(params, x):
        model = eqx.combine(params, static)

        def loss(both):
            return jnp.sum(jax.vmap(both[0])(both[1], mask) * cotangent)

        grads = eqx.filter_grad(loss)((model, x))
        theta_and_x = (eqx.tree_at(lambda g: g.solver, grads[0], None), grads[1])
        flat = ravel_pytree(eqx.filter(theta_and_x, eqx.is_array))[0]
        residual = jax.vmap(model.solve)(x, mask).stats.grad_max_norm
        return flat, jnp.max(residual)

    compiled = jax.jit(gradient_and_residual).lower(params, x).compile()
    grad, residual = compiled(params, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - start)
    memory = compiled.memory_analysis()
    total = memory.temp_size_in_bytes + memory.argument_size_in_bytes
    total += memory.output_size_in_bytes
    return {
        "grad": np.asarray(grad),
        "residual": float(residual),
        "MB": total / 1e6,
        "ms": 1e3 * statistics.median(times),
    }


def _cosine(g: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of two flat gradients (0 when either is zero)."""
    norms = np.linalg.norm(g) * np.linalg.norm(reference)
    return float(g @ reference / norms) if norms > 0 else 0.0
