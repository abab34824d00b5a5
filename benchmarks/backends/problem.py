"""The problem every backend suite measures: median estimation (paper D.1) through one solved
layer.

A batch of sets of `set_size` numbers drawn as in appendix D.1 and the median task's model
(`benchmarks.tasks.models.median_model`: by default an EA layer with a `Neural` potential
pooling each set into `out_size` numbers, a residual-MLP decoder predicting the median); the
loss is the squared error. The suites swap the layer's backend with `with_solver`. `--layer
otke` or `--layer rotp` (for the suites that take it) replaces EA by a transport layer after a
residual-MLP encoder, its backends running Sinkhorn.

`--size counting` and `--size molpcba` replace the sizes by the paper's class-counting and
MOLPCBA layers (elements of 256 or 300 standard normal features regressed onto a standard
normal target), for the timing and memory suites.
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

import solvers

from ..shared import cli
from ..shared.data.median import median_sets
from ..shared.strategies import BACKENDS, METHODS, make_backend, make_method
from ..tasks.models import SetModel, median_model

LAYERS = ("ea", "otke", "rotp")
"""The solved layers a suite can measure (`--layer`)."""


def sweep_backend(
    args: argparse.Namespace, name: str, steps: int, **options
) -> solvers.AbstractBackend:
    """Backend `name` with `steps` steps and the sweep flags' forward method (`--method`) and
    taped steps (`--truncate-k`, `--phantom-k`, `--damping`); `options` go to the
    backend (e.g. `throw=False`)."""
    layer = getattr(args, "layer", "ea")
    k = args.phantom_k if name == "phantom" else args.truncate_k
    method = make_method(args.method, transport=layer != "ea")
    return make_backend(name, steps, k=k, method=method, damping=args.damping, **options)


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
    layer: str = "ea",
) -> tuple[SetModel, Float[Array, "b n d"], Float[Array, " b"]]:
    """The model of `layer` (default backend `Unrolled(10)` with the layer's method) and one
    batch of sets with their labels, all floating-point arrays in `dtype`: D.1 sets and
    medians for `in_size = 1`, standard normal elements and targets otherwise."""
    k_model, k_data = jax.random.split(key)
    solver = solvers.Unrolled(10) if solver is None else solver
    model = median_model(
        layer, out_size, in_size=in_size, widths=widths, decoder_widths=readout_widths,
        backend=solver, regularisation=regularisation, key=k_model,
    )  # fmt: skip
    if in_size == 1:
        x, labels = median_sets(k_data, batch, set_size)
    else:
        k_x, k_labels = jax.random.split(k_data)
        x = jax.random.normal(k_x, (batch, set_size, in_size))
        labels = jax.random.normal(k_labels, (batch,))
    return cast((model, x, labels), dtype)


def with_solver(
    model: SetModel, solver: solvers.AbstractBackend, tolerance: float | None = None
) -> SetModel:
    """`model` with its layer's backend replaced by `solver` (all other parameters kept; a
    backend without a method gets the layer's own), its method's tolerance set to
    `tolerance` when given, and its arrays in the model's dtype."""
    pool = model.pool.with_solver(solver)
    if tolerance is not None:
        pool = pool.with_solver(
            pool.solver.with_method(pool.solver.method.with_tolerance(tolerance))
        )
    dtype = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype
    return eqx.tree_at(lambda m: m.pool, model, cast(pool, dtype))


def cast(tree: Any, dtype: Any) -> Any:
    """Every floating-point array of `tree` cast to `dtype`."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def solve_stats(model: SetModel, x: Float[Array, "b n d"]) -> solvers.Stats:
    """The inner solve's per-set stats on a batch (after the encoder, if any)."""
    h = x if model.encoder is None else jax.vmap(jax.vmap(model.encoder))(x)
    return jax.vmap(model.pool.solve)(h).stats


def loss(
    model: SetModel,
    x: Float[Array, "b n d"],
    labels: Float[Array, " b"],
    aux_weight: float | Scalar = 0.0,
) -> Scalar:
    """Mean squared error of the predictions, plus `aux_weight` × the eq. 5 loss."""
    prediction, aux = jax.vmap(model)(x)
    return jnp.mean((prediction[:, 0] - labels) ** 2) + aux_weight * jnp.mean(aux)


def parameter_grads(model: SetModel, x: Float[Array, "b n d"], labels: Float[Array, " b"]):
    """Gradient of `loss` split into `(θ, optimizer)`, and the forward residual.

    **Returns:** `θ` flat over every parameter outside the solver; `optimizer` the dict
    `{"lr": ∂/∂raw_lr, "momentum": ∂/∂raw_momentum}` for Nesterov (empty for a method
    without learned parameters); and the largest final `max|∇_y E|` over the batch.
    """
    grads = eqx.filter_grad(loss)(model, x, labels)
    method = grads.pool.solver.method
    flat, _ = ravel_pytree(theta_of(grads))
    optimizer = {}
    if isinstance(method, solvers.Nesterov):  # the paper's learned step size and momentum
        optimizer = {"lr": method.raw_lr, "momentum": method.raw_momentum}
    return flat, optimizer, jnp.max(solve_stats(model, x).grad_max_norm)


def theta_of(model: SetModel) -> SetModel:
    """The arrays of `model` outside its solver (the parameters `θ` gradients are compared
    on); the solver's subtree is `None`."""
    return eqx.filter(eqx.tree_at(lambda m: m.pool.solver, model, None), eqx.is_array)


def diagnose(model: SetModel, x: Float[Array, "b n d"], labels: Float[Array, " b"]):
    """What one forward+backward of `model`'s backend computed on this batch: the fraction of
    sets whose forward converged, the largest final residual `max|∇_y E|`, the most steps
    taken and, under Implicit, how many sets' backward linear solves failed and the most
    iterations one took (`None` for the other backends). Run apart from any timing: it
    reads the backward's diagnostics through a host callback."""
    reports: list[solvers.LinearSolveStats] = []
    solver = model.pool.solver
    if isinstance(solver, solvers.Implicit):
        solver = dataclasses.replace(solver, report=reports.append)
    probe = with_solver(model, solver)
    stats = eqx.filter_jit(solve_stats)(probe, x)
    eqx.filter_jit(eqx.filter_grad(loss))(probe, x, labels)
    return {
        "converged": float(jnp.mean(stats.converged)),
        "residual": float(jnp.max(stats.grad_max_norm)),
        "forward_steps": int(jnp.max(stats.num_steps)),
        "backward_failed": int(np.sum(reports[-1].failed)) if reports else None,
        "backward_iterations": int(np.max(reports[-1].iterations)) if reports else None,
    }


SIZES = {
    "counting": dict(batch=8, set_size=16, in_size=256, out_size=256, widths=[512, 512, 32]),
    "molpcba": dict(batch=8, set_size=128, in_size=300, out_size=300, widths=[600, 300, 32]),
}
"""`--size` presets: the paper's layer sizes (5.2: d = m = 256, potential [512, 512, 32], sets
of 16, batches of 8; 5.3: d = m = 300, [600, 300, 32], graphs of up to 128 nodes, 8 per
batch). Their T (10 and 15) is `SIZE_STEPS`."""
SIZE_STEPS = {"counting": 10, "molpcba": 15}


def add_problem_flags(
    parser: argparse.ArgumentParser, dtype: str = "float32", layers: bool = False
) -> None:
    """The flags every suite shares: sizes, dtype, seed, output folder, quick mode; `layers`:
    also `--layer`."""
    group = parser.add_argument_group("problem")
    if layers:
        group.add_argument(
            "--layer", choices=LAYERS, default="ea",
            help="the solved layer: EA (Nesterov) or a transport layer (Sinkhorn)",
        )  # fmt: skip
    group.add_argument(
        "--size",
        choices=["median", *SIZES],
        default="median",
        help="layer sizes: the median task's, or the paper's counting or MOLPCBA layer",
    )
    group.add_argument("--batch", type=cli.positive_int, default=8, help="sets per batch")
    group.add_argument(
        "--set-size", type=cli.positive_int, default=100, help="elements per set (D.1: 100)"
    )
    group.add_argument("--in-size", type=cli.positive_int, default=1, help="element size d")
    group.add_argument("--out-size", type=cli.positive_int, default=8, help="aggregate size m")
    group.add_argument(
        "--widths", type=cli.positive_int, nargs="+", default=[64, 64, 16],
        help="the potential's layer widths (transport layers: the encoder's)",
    )  # fmt: skip
    group.add_argument(
        "--readout", type=cli.positive_int, nargs="+", default=[32], help="decoder widths"
    )
    group.add_argument(
        "--regularisation", type=cli.positive_float, default=0.1,
        help="the EA potential's initial softplus(λ)",
    )  # fmt: skip
    group.add_argument(
        "--dtype", choices=["float32", "float64"], default=dtype, help="floating-point type"
    )
    group.add_argument("--seed", type=cli.non_negative_int, default=0, help="random seed")
    group.add_argument("--out", default=None, help="output folder (default: results/<suite>)")
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    group.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")


STEPS = (1, 2, 5, 10, 20, 50, 100)
"""The inner-step counts T every sweep measures by default."""


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the suites that sweep T: `--inner-steps`, `--backends`, `--truncate-k`."""
    group = parser.add_argument_group("backends")
    group.add_argument(
        "--inner-steps", type=cli.positive_int, nargs="+", default=list(STEPS),
        help="the values of T (inner steps) to measure",
    )  # fmt: skip
    group.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
        help="the backends to compare",
    )  # fmt: skip
    group.add_argument(
        "--method", choices=METHODS, default="layer",
        help="every backend's forward method (layer: the layer's own: Nesterov for EA under "
        "the backends that differentiate T steps, Newton under Implicit and Phantom; "
        "Sinkhorn for OTKE and ROTP)",
    )  # fmt: skip
    group.add_argument(
        "--truncate-k", type=cli.positive_int, default=2, help="Truncated's taped steps k"
    )
    group.add_argument(
        "--phantom-k", type=cli.positive_int, default=1, help="Phantom's taped steps k"
    )
    group.add_argument(
        "--damping", type=cli.positive_float, default=1.0, help="Phantom's damping τ in (0, 1]"
    )


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
    if args.size in SIZE_STEPS and isinstance(getattr(args, "inner_steps", None), list):
        overrides["inner_steps"] = [SIZE_STEPS[args.size]]
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
        getattr(args, "layer", "ea"),
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
