"""Problem tables, value strategies and comparison helpers shared by the tests."""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import eqx_agg
import solvers
from eqx_agg import testing
from eqx_agg.testing import MAX_SET, SCALES

BACKENDS = {
    "unrolled": lambda steps, k, **options: solvers.Unrolled(steps, **options),
    "checkpointed": lambda steps, k, **options: solvers.Checkpointed(steps, **options),
    "truncated": lambda steps, k, **options: solvers.Truncated(steps, k, **options),
    "implicit": lambda steps, k, **options: solvers.Implicit(steps, **options),
    "phantom": lambda steps, k, **options: solvers.Phantom(steps, k, **options),
}
"""Every differentiation backend, by name: `BACKENDS[name](steps, k, **options)` (`k` taped
steps where the backend has them)."""

METHODS = {
    "nesterov": lambda: solvers.Nesterov(lr=0.5),
    "newton": solvers.Newton,
    "anderson": solvers.Anderson,
}
"""Every forward method for learned energies, by name."""


@dataclasses.dataclass(frozen=True)
class BackendCase:
    """A backend of the strategy matrix: `converged(method, steps)` builds it at settings
    where its gradient at convergence is the implicit one, exactly (`kind="exact"`) or as a
    truncated series (`"approximate"`)."""

    converged: Callable[["MethodCase"], solvers.AbstractBackend]
    kind: str


TIGHT = 1e-10
"""The tolerance of a forward to tolerance in the strategy matrix (float64)."""

MATRIX_BACKENDS = {
    "unrolled": BackendCase(
        lambda case: solvers.Unrolled(case.steps, method=case.method().without_tolerance()),
        "exact",
    ),
    "checkpointed": BackendCase(
        lambda case: solvers.Checkpointed(case.steps, method=case.method().without_tolerance()),
        "exact",
    ),
    "truncated": BackendCase(
        lambda case: solvers.Truncated(2 * case.steps, case.steps, method=case.method()),
        "approximate",
    ),
    "implicit": BackendCase(
        lambda case: solvers.Implicit(case.steps, method=case.method().with_tolerance(TIGHT)),
        "exact",
    ),
    "phantom": BackendCase(
        lambda case: solvers.Phantom(
            case.steps,
            case.phantom_k or case.steps,
            case.phantom_damping,
            method=case.method().with_tolerance(TIGHT),
        ),  # fmt: skip
        "approximate",
    ),
}
"""Every backend, for `tests/test_strategy_matrix.py`."""


@dataclasses.dataclass(frozen=True)
class MethodCase:
    """A forward method of the strategy matrix, with a layer it serves, the steps it needs
    to converge there, how close the derivative of its converged iterates comes to the
    implicit gradient, and its Phantom setting (Newton-type methods: one undamped step,
    whose derivative is the implicit gradient; others: `steps` damped ones)."""

    method: Callable[[], solvers.AbstractMethod]
    layer: Callable[[solvers.AbstractBackend], eqx_agg.AbstractSolvedAggregation]
    steps: int
    derivative_tolerance: float = 1e-6
    phantom_k: int | None = None
    phantom_damping: float = 0.8


def _neural(solver):
    return neural_layer(solver)


def _median(solver):
    return eqx_agg.EquilibriumAggregation(eqx_agg.energies.Median(smoothing=0.1), solver)


def _otke(solver):
    return eqx_agg.OTKE(3, 2, eps=0.5, solver=solver, key=jax.random.key(3))


MATRIX_METHODS = {
    "nesterov": MethodCase(lambda: solvers.Nesterov(lr=0.5, gtol=None, restart=True), _neural, 300),
    "newton": MethodCase(solvers.Newton, _neural, 30, phantom_k=1, phantom_damping=1.0),
    "anderson": MethodCase(lambda: solvers.Anderson(lr=0.5), _neural, 200, 2e-2),
    "coordinate-newton": MethodCase(
        solvers.CoordinateNewton, _median, 60, phantom_k=1, phantom_damping=1.0
    ),
    "sinkhorn": MethodCase(solvers.Sinkhorn, _otke, 300),
    "anderson-sinkhorn": MethodCase(
        lambda: solvers.Anderson(sinkhorn=solvers.Sinkhorn()), _otke, 200, 1e-4
    ),
}
"""Every forward method, each on a layer it serves, for `tests/test_strategy_matrix.py`."""


def make_backend(name: str, steps: int, k: int | None = None, **options):
    """Backend `name` with `steps` inner steps (a cap where the forward runs to tolerance)
    and `k` taped steps (default `min(2, steps)` for Truncated, 1 for Phantom)."""
    if k is None:
        k = 1 if name == "phantom" else min(2, steps)
    return BACKENDS[name](steps, k, **options)


def make_energy(name: str, d: int, key):
    """One energy of each kind, for elements of size `d` (defaults everywhere)."""
    return {
        "mean": lambda: eqx_agg.energies.Mean(),
        "sum": lambda: eqx_agg.energies.Sum(),
        "median": lambda: eqx_agg.energies.Median(),
        "max": lambda: eqx_agg.energies.Max(),
        "attention": lambda: eqx_agg.energies.Attention(d, key=key),
        "neural": lambda: eqx_agg.energies.Neural(d, 3, widths=(16, 8), key=key),
    }[name]()


ANALYTIC = ["mean", "sum", "median", "max", "attention"]


def neural_layer(solver, d: int = 3, seed: int = 0):
    """The small learned-potential layer most backend tests use (`d → 3`)."""
    energy = eqx_agg.energies.Neural(d, 3, widths=(16, 8), key=jax.random.PRNGKey(seed))
    return eqx_agg.EquilibriumAggregation(energy, solver)


def random_set(seed: int, n: int, d: int, scale: float = 1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(n, d)))


def set_values(d: int, min_size: int = 1, max_size: int = MAX_SET, scales=SCALES):
    """`(x, n)`, the older tests' form of the kit's `sets`: `n` drawn elements (ties,
    duplicates, a drawn scale and offset) as the first rows, then 1e30 rows up to
    `max_size`, float64."""
    drawn = testing.sets(
        d,
        min_size=min_size,
        max_size=max_size,
        scales=scales,
        padding=(1e30,),
        dtypes=(np.float64,),
        shuffle=False,
    )
    return drawn.map(lambda drawn: (drawn.x, int(drawn.mask.sum())))


def masked(x: np.ndarray, n: int):
    """`x` as a jax array and the mask of its first `n` rows."""
    return jnp.asarray(x), jnp.arange(x.shape[0]) < n


def relative_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def flat(tree) -> np.ndarray:
    """Every array leaf of `tree`, flattened and concatenated."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.zeros(0)] + [np.ravel(np.asarray(leaf)) for leaf in leaves])


def tree_allclose(a, b, rtol=1e-7, atol=1e-9) -> bool:
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )
