"""The benchmarks' default problem: median estimation (paper D.1) through one EA layer.

A batch of sets of `set_size` numbers drawn as in appendix D.1, an
[`eqx_agg.EquilibriumAggregation`][] layer with the [`eqx_agg.energies.Neural`][] potential
pooling each set into `out_size` numbers, and a small residual-MLP readout predicting the
median; the loss is the mean squared error. Every suite builds its model and data here, and
swaps the layer's differentiation backend with `with_solver`.

`--size counting` and `--size molpcba` replace the sizes by the paper's class-counting and
MOLPCBA layers (elements of `in_size` = 256 or 300 features, standard normal, regressed onto
a standard normal target), for the timing and memory suites.
"""

import argparse
import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

import eqx_agg
import solvers

from .data.median import median_sets

BACKENDS = ("unrolled", "implicit", "truncated")
"""Names of the three differentiation backends, as the suites' `--backends` flag takes them."""


class MedianModel(eqx.Module):
    """EA layer (Neural potential) followed by a residual-MLP readout to one number.

    **Arguments:**

    - `out_size`: size `m` of the aggregate `y`.
    - `widths`: the potential's layer widths.
    - `readout_widths`: hidden widths of the readout (a final width-1 layer is added).
    - `solver`: the layer's differentiation backend.
    - `in_size`: element size (1: numbers); `regularisation`: the potential's initial
      `softplus(λ)`.
    - `key`: a `jax.random` key.
    """

    layer: eqx_agg.EquilibriumAggregation
    readout: eqx_agg.ResidualMLP

    def __init__(
        self,
        out_size: int,
        widths: tuple[int, ...],
        readout_widths: tuple[int, ...],
        solver: solvers.AbstractBackend,
        in_size: int = 1,
        regularisation: float = 0.1,
        *,
        key: PRNGKeyArray,
    ):
        k_energy, k_readout = jax.random.split(key)
        energy = eqx_agg.energies.Neural(
            in_size, out_size, widths, regularisation=regularisation, key=k_energy
        )
        self.layer = eqx_agg.EquilibriumAggregation(energy, solver)
        self.readout = eqx_agg.ResidualMLP(out_size, (*readout_widths, 1), key=k_readout)

    def __call__(self, x: Float[Array, "n d"]) -> tuple[Scalar, solvers.Stats]:
        """The predicted median of one set and the inner solve's (scalar) stats."""
        sol = self.layer.solve(x)
        return self.readout(sol.value)[0], sol.stats


def make_backend(name: str, steps: int, k: int | None = None, **options: Any):
    """Build backend `name` (`"unrolled"`, `"implicit"` or `"truncated"`) with `steps` inner
    steps; `k` is the taped steps of `"truncated"` (default `min(2, steps)`); `options` go to
    the backend's constructor (`lr`, `momentum`, `gtol`, `linear_solver`, `throw`, ...)."""
    if name == "unrolled":
        return solvers.Unrolled(steps, **options)
    if name == "implicit":
        return solvers.Implicit(steps, **options)
    if name == "truncated":
        return solvers.Truncated(steps, min(2, steps) if k is None else k, **options)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")


def with_solver(model: MedianModel, solver: solvers.AbstractBackend) -> MedianModel:
    """`model` with its layer's backend replaced by `solver` (all other parameters kept)."""
    return eqx.tree_at(lambda m: m.layer.solver, model, solver)


def cast(tree: Any, dtype: Any) -> Any:
    """Every floating-point array of `tree` cast to `dtype`."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def make_problem(
    key: PRNGKeyArray,
    batch: int,
    set_size: int,
    out_size: int,
    widths: tuple[int, ...],
    readout_widths: tuple[int, ...],
    dtype: Any,
    solver: solvers.AbstractBackend | None = None,
    in_size: int = 1,
    regularisation: float = 0.1,
) -> tuple[MedianModel, Float[Array, "b n d"], Float[Array, " b"]]:
    """A model (default backend `Unrolled(10)`) and one batch of sets with their labels, all
    floating-point arrays in `dtype`: D.1 sets and medians for `in_size = 1`, standard normal
    elements and targets otherwise."""
    k_model, k_data = jax.random.split(key)
    solver = solvers.Unrolled(10) if solver is None else solver
    model = MedianModel(
        out_size, widths, readout_widths, solver, in_size, regularisation, key=k_model
    )
    if in_size == 1:
        x, labels = median_sets(k_data, batch, set_size)
    else:
        k_x, k_labels = jax.random.split(k_data)
        x = jax.random.normal(k_x, (batch, set_size, in_size))
        labels = jax.random.normal(k_labels, (batch,))
    return cast((model, x, labels), dtype)


def predict(model: MedianModel, x: Float[Array, "b n d"]) -> tuple[Float[Array, " b"], Any]:
    """Predictions and per-set stats for a batch of sets."""
    return jax.vmap(model)(x)


def loss(
    model: MedianModel,
    x: Float[Array, "b n d"],
    labels: Float[Array, " b"],
    aux_weight: float | Scalar = 0.0,
) -> Scalar:
    """Mean squared error of the predicted medians, plus `aux_weight` × the eq. 5 loss."""
    prediction, stats = predict(model, x)
    return jnp.mean((prediction - labels) ** 2) + aux_weight * jnp.mean(stats.aux_loss)


def parameter_grads(model: MedianModel, x: Float[Array, "b n d"], labels: Float[Array, " b"]):
    """Gradient of `loss` split into `(θ, optimizer)`, and the forward residual.

    **Returns:** `θ` flat over the potential, the regulariser and the readout; `optimizer`
    the dict `{"lr": ∂/∂raw_lr, "momentum": ∂/∂raw_momentum}`; and the largest final
    `max|∇_y E|` over the batch.
    """

    grads, residual = eqx.filter_grad(_loss_and_residual, has_aux=True)(model, x, labels)
    optimizer = grads.layer.solver.optimizer
    flat, _ = ravel_pytree(theta_of(grads))
    lr_momentum = {"lr": optimizer.raw_lr, "momentum": optimizer.raw_momentum}
    return flat, lr_momentum, residual


def diagnose(model: MedianModel, x: Float[Array, "b n d"], labels: Float[Array, " b"]):
    """What one forward+backward of `model`'s backend computed on this batch: the fraction of
    sets whose forward converged, the largest final residual `max|∇_y E|`, the most steps
    taken and, under Implicit, how many sets' backward linear solves failed and the most
    iterations one took (`None` for the other backends). Run apart from any timing: it
    reads the backward's diagnostics through a host callback."""
    reports: list[solvers.LinearSolveStats] = []
    solver = model.layer.solver
    if isinstance(solver, solvers.Implicit):
        solver = dataclasses.replace(solver, report=reports.append)
    probe = with_solver(model, solver)
    stats = eqx.filter_jit(lambda m: predict(m, x)[1])(probe)
    eqx.filter_jit(eqx.filter_grad(loss))(probe, x, labels)
    return {
        "converged": float(jnp.mean(stats.converged)),
        "residual": float(jnp.max(stats.grad_max_norm)),
        "forward_steps": int(jnp.max(stats.num_steps)),
        "backward_failed": int(np.sum(reports[-1].failed)) if reports else None,
        "backward_iterations": int(np.max(reports[-1].iterations)) if reports else None,
    }


def _loss_and_residual(model, x, labels):
    prediction, stats = predict(model, x)
    return jnp.mean((prediction - labels) ** 2), jnp.max(stats.grad_max_norm)


def theta_of(model: MedianModel) -> MedianModel:
    """The arrays of `model` outside its solver (the parameters `θ` gradients are compared
    on); the solver's subtree is `None`."""
    return eqx.filter(eqx.tree_at(lambda m: m.layer.solver, model, None), eqx.is_array)


SIZES = {
    "counting": dict(batch=8, set_size=16, in_size=256, out_size=256, widths=[512, 512, 32]),
    "molpcba": dict(batch=8, set_size=128, in_size=300, out_size=300, widths=[600, 300, 32]),
}
"""`--size` presets: the paper's layer sizes (5.2: d = m = 256, potential [512, 512, 32], sets
of 16, batches of 8; 5.3: d = m = 300, [600, 300, 32], graphs of up to 128 nodes, 8 per
batch). Their T (10 and 15) is `SIZE_STEPS`."""
SIZE_STEPS = {"counting": 10, "molpcba": 15}


def add_problem_flags(parser: argparse.ArgumentParser, dtype: str = "float32") -> None:
    """The flags every suite shares: sizes, dtype, seed, output folder, quick mode."""
    parser.add_argument(
        "--size", choices=["median", *SIZES], default="median", help="size preset (see above)"
    )
    parser.add_argument("--batch", type=int, default=8, help="sets per batch")
    parser.add_argument("--set-size", type=int, default=100, help="elements per set (D.1: 100)")
    parser.add_argument("--in-size", type=int, default=1, help="element size d")
    parser.add_argument("--out-size", type=int, default=8, help="aggregate size m")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 64, 16], help="potential")
    parser.add_argument("--readout", type=int, nargs="+", default=[32], help="readout widths")
    parser.add_argument(
        "--regularisation", type=float, default=0.1, help="the potential's initial softplus(λ)"
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default=dtype)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default results/<suite>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests")


STEPS = (1, 2, 5, 10, 20, 50, 100)
"""The inner-step counts T every sweep measures by default (the issue's grid)."""


def add_sweep_flags(parser: argparse.ArgumentParser, k_help: str = "Truncated's k") -> None:
    """The flags of the suites that sweep T: `--steps`, `--backends`, `--k`."""
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="values of T")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=BACKENDS)
    parser.add_argument("--k", type=int, default=2, help=k_help)


QUICK_SIZES = dict(batch=2, set_size=8, out_size=2, widths=[8, 8, 4], readout=[4])
"""What `--quick` overrides in the shared flags."""


def apply_quick(
    parser: argparse.ArgumentParser, argv: list[str] | None, **suite_quick: Any
) -> argparse.Namespace:
    """Parse `argv`; apply the `--size` preset (its sizes and, when the suite sweeps T, its T)
    and, under `--quick`, replace the shared sizes (and the suite's `suite_quick`) by tiny
    ones, in both cases except flags given explicitly; enable float64 in JAX when
    `--dtype float64`."""
    args = parser.parse_args(argv)
    overrides = dict(SIZES.get(args.size, {}))
    if args.size in SIZE_STEPS and hasattr(args, "steps") and isinstance(args.steps, list):
        overrides["steps"] = [SIZE_STEPS[args.size]]
    if args.quick:
        overrides |= {**QUICK_SIZES, **suite_quick}
    for name, value in overrides.items():
        if getattr(args, name) == parser.get_default(name):
            setattr(args, name, value)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return args


def problem_from_args(args: argparse.Namespace, solver: solvers.AbstractBackend | None = None):
    """`make_problem` with the sizes, dtype and seed of parsed shared flags."""
    return make_problem(
        jax.random.PRNGKey(args.seed),
        args.batch,
        args.set_size,
        args.out_size,
        tuple(args.widths),
        tuple(args.readout),
        jnp.dtype(args.dtype),
        solver,
        args.in_size,
        args.regularisation,
    )


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as a JSON-ready dict (recorded in every results.json)."""
    return {name: value for name, value in vars(args).items() if name not in {"out", "quiet"}}


_COMPILED: dict[Any, Any] = {}


def compiled_loss_and_grad(model: eqx.Module, x: Array, labels: Array, loss_fn=None):
    """The jitted, ahead-of-time compiled forward+backward `(loss, grads)` of `loss_fn`
    (default `loss`) for this model structure and these shapes, cached per process so that
    the memory and timing suites share one compilation.

    **Returns:** `(compiled, params)`: call `compiled(params, x, labels)`; `compiled`
    also has `memory_analysis()`.
    """
    loss_fn = loss if loss_fn is None else loss_fn
    params, static = eqx.partition(model, eqx.is_array)
    leaves = [(a.shape, a.dtype) for a in jax.tree_util.tree_leaves((params, x, labels))]
    key = (loss_fn, jax.tree_util.tree_structure(model), tuple(leaves))
    if key not in _COMPILED:

        def loss_and_grad(params, x, labels):
            return jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), x, labels))(params)

        _COMPILED[key] = jax.jit(loss_and_grad).lower(params, x, labels).compile()
    return _COMPILED[key], params
