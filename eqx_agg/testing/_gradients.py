"""Check a layer's gradients: against finite differences or the converged implicit gradient,
and one backend against another."""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

import solvers

from .._abstract import AbstractAggregation, AbstractSolvedAggregation
from ._errors import PropertyViolation, VacuousCheck
from ._inputs import (
    assert_close,
    checked_layer,
    checked_set,
    checked_solved_layer,
    cotangent,
    data_scale,
    describe,
    evaluate,
    inexact_leaves,
    norm_error,
    require_elements,
    require_finite,
    value_and_gradients,
    value_error,
)
from ._tolerances import (
    FINITE_DIFFERENCE_RTOL,
    converged_reference,
    gradient_tolerance,
    is_approximate,
    rounding_tolerance,
    solver_tolerance,
)

FINITE_DIFFERENCE_STEPS = (1e-3, 1e-5, 1e-7)
"""Central differences steps along a unit direction, times the largest magnitude among the
set's elements (for `x`) or the root-mean-square of the parameters. The error is the
smallest over the steps: no one step suits every layer (a learned potential varies on the
scale of its weights whatever the data's, a smoothed median on a fraction of the set's
range), and a wrong gradient is wrong at every step."""

CHECK = "gradient correctness"


class GradientError(NamedTuple):
    """What [`eqx_agg.testing.check_gradient`][] measured: the relative 2-norm errors of the
    gradient w.r.t. `x` and, if asked, the parameters (None otherwise); what they were
    measured against (`"finite differences"` or `"converged implicit gradient"`); and
    whether the backend's gradient is `exact` (then the check failed above its tolerance)
    or an approximation (then it only measured)."""

    x: float
    parameters: float | None
    reference: str
    exact: bool


def check_gradient(
    layer: AbstractAggregation,
    x: Float[ArrayLike, "n d"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    parameters: bool = False,
    reference: solvers.AbstractBackend | None = None,
    rtol: float | None = None,
    directions: int = 3,
    seed: int = 0,
) -> GradientError:
    """Check the gradient of a fixed linear function of the aggregate w.r.t. `x` (and the
    layer's parameters), in float64.

    The layer's floating-point leaves and `x` are cast to float64 (under
    `jax.enable_x64`), so what is checked is the gradient rule, not float32 rounding.

    - A closed-form pooling, or a backend whose gradient is exact (Unrolled, Checkpointed,
      Truncated with `k = steps`, Implicit, or one of yours): the derivatives along
      `directions` random unit directions are compared with central finite differences of
      what the backend differentiates: the layer itself for a `T`-step procedure; for a
      backend that runs to tolerance (Implicit), whose gradient is that of the argmin, the
      layer converged under `reference`. Fails above `rtol`.
    - An approximate backend (Truncated with `k < steps`, Phantom): the gradient is compared
      with the converged implicit gradient, that of the layer under `reference`. The error
      is measured and returned, never failed on: it is the approximation's. The solver's
      own parameters (lr, momentum), which the implicit gradient does not reach, are left
      out.

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractAggregation`][], differentiable at `x` (a max or median
      is not at ties).
    - `x`: `[n, d]`; `mask`: `[n]` (default: every row counts). Only unmasked rows are
      perturbed.
    - `parameters`: also check the gradient w.r.t. the layer's floating-point parameters.
    - `reference`: the backend of the converged layer; default `solvers.Implicit(
      linear_solver="lu")` running the layer's own forward method to 1e-10 (at most 10 000
      steps).
    - `rtol`: the relative 2-norm error allowed against finite differences. Default 1e-6
      (the differences' own error is near 1e-10), or `100 τ` if larger, `τ` the solver's
      float64 tolerance, for a backend that runs to it (its gradient is exact only at the
      argmin).
    - `directions`: random directions for the finite differences; `seed`: of the directions
      and of the linear function's weights.

    **Returns:** a [`eqx_agg.testing.GradientError`][].

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] if an exact gradient is off, or a
    gradient is not finite; [`eqx_agg.testing.VacuousCheck`][] for an empty set, a
    non-finite aggregate, or a zero reference gradient (finite differences within their
    rounding noise).
    """
    layer = checked_layer(layer)
    x, mask = checked_set(x, mask)
    require_elements(x, mask, CHECK)
    context = describe(x, mask)
    with jax.enable_x64(True):
        layer, x = _float64(layer), jnp.asarray(x, jnp.float64)
        weights = cotangent(seed, (layer.output_size(x.shape[1]),), jnp.float64)
        value, grad_layer, grad_x = value_and_gradients(layer, x, mask, weights)
        require_finite(value, "the aggregate", CHECK, context)
        for what, grad in [("x", grad_x), ("the layer's parameters", inexact_leaves(grad_layer))]:
            if not np.all(np.isfinite(grad)):
                raise PropertyViolation(
                    CHECK,
                    float("inf"),
                    0.0,
                    f"{CHECK} violated by {type(layer).__name__}: the gradient w.r.t. {what} "
                    f"is not finite; {context}",
                )
        backend = layer.bound_solver() if isinstance(layer, AbstractSolvedAggregation) else None
        if backend is not None and is_approximate(backend):
            converged = _converged(layer, reference)
            solution, converged_layer, converged_x = _solve_and_differentiate(
                converged, x, mask, weights
            )
            _require_converged(converged, solution, context)
            rows = np.asarray(mask)
            return GradientError(
                x=_measured(np.asarray(grad_x)[rows], np.asarray(converged_x)[rows], "x", context),
                parameters=(
                    _measured(_model(grad_layer), _model(converged_layer), "parameters", context)
                    if parameters
                    else None
                ),
                reference="converged implicit gradient",
                exact=False,
            )
        target, tolerance = layer, FINITE_DIFFERENCE_RTOL
        if backend is not None and backend.runs_to_tolerance:
            target = _converged(layer, reference)
            tolerance = max(tolerance, 100 * solver_tolerance(layer, jnp.float64))
        differences = _FiniteDifferences(
            layer, target, x, mask, weights, tolerance if rtol is None else rtol, context
        )
        key_x, key_parameters = jax.random.split(jax.random.key(seed + 1))
        x_error = differences.along_x(grad_x, jax.random.split(key_x, directions))
        parameter_error = None
        if parameters:
            keys = jax.random.split(key_parameters, directions)
            parameter_error = differences.along_parameters(grad_layer, keys)
        return GradientError(x_error, parameter_error, "finite differences", exact=True)


def check_backends_agree(
    layer: AbstractSolvedAggregation,
    x: Float[ArrayLike, "n d"],
    mask: Bool[ArrayLike, " n"] | None = None,
    *,
    backends: Sequence[solvers.AbstractBackend],
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> float:
    """Check that `layer` gives the same aggregate and the same gradients (w.r.t. `x` and
    its parameters, the solver's own left out) under each of `backends` as under the first.

    Meant for backends at convergence, where every exact backend's gradient is the implicit
    one: give each enough steps. With `rtol=0, atol=0` it checks that two backends are the
    same computation (Truncated with `k = steps` and Unrolled). An approximate backend
    (Truncated with `k < steps`, Phantom) agrees only to its truncation error: measure that
    with [`eqx_agg.testing.check_gradient`][] instead.

    **Arguments:**

    - `layer`: an [`eqx_agg.AbstractSolvedAggregation`][] (its own solver is not used).
    - `x`: `[n, d]`; `mask`: `[n]` (default: every row counts).
    - `backends`: two or more values from [`solvers`][]; one built without `method=` runs
      the layer's own forward method.
    - `rtol`, `atol`: aggregates pass within `rtol · scale + atol` of the first backend's,
      `scale` the larger of its max-abs and the set's; gradients within `rtol + atol`
      relative 2-norm error. Default `rtol`: 1000 eps of the result's dtype for aggregates,
      `10 √eps` for gradients; default `atol`: the largest of the backends' tolerances.
    - `seed`: of the linear function's weights.

    **Returns:** the largest error measured.

    **Raises:** [`eqx_agg.testing.PropertyViolation`][] where a backend disagrees (the
    message says whether each converged); [`eqx_agg.testing.VacuousCheck`][] for an empty
    set, a non-finite aggregate, or a zero gradient under the first backend.
    """
    check = "agreement between backends"
    layer = checked_solved_layer(layer)
    x, mask = checked_set(x, mask)
    require_elements(x, mask, check)
    backends = list(backends)
    if len(backends) < 2 or not all(isinstance(b, solvers.AbstractBackend) for b in backends):
        raise TypeError(f"backends must be two or more solvers.AbstractBackend, got {backends}")
    layers = [layer.with_solver(backend) for backend in backends]
    dtype = eqx.filter_eval_shape(layers[0], x, mask).dtype
    weights = cotangent(seed, (layer.output_size(x.shape[1]),), dtype)
    first, *others = [_Run(*_solve_and_differentiate(each, x, mask, weights)) for each in layers]
    context = describe(x, mask)
    require_finite(first.solution.value, "the aggregate under the first backend", check, context)
    rows = np.asarray(mask)
    if not np.any(np.asarray(first.grad_x)[rows]):
        raise VacuousCheck(f"{check}: the gradient w.r.t. x is zero ({context})")
    value_rtol = rounding_tolerance(dtype) if rtol is None else rtol
    gradient_rtol = gradient_tolerance(dtype) if rtol is None else rtol
    if atol is None:
        atol = max(solver_tolerance(each, dtype) for each in layers)
    scale = max(float(jnp.max(jnp.abs(first.solution.value))), data_scale(x, mask))
    errors = []
    for backend, run in zip(backends[1:], others, strict=True):
        where = (
            f"{_name(backends[0])} and {_name(backend)} (converged: "
            f"{bool(np.all(first.solution.stats.converged))} and "
            f"{bool(np.all(run.solution.stats.converged))}); {context}"
        )
        error = value_error(run.solution.value, first.solution.value)
        errors.append(assert_close(check, layer, error, scale, value_rtol, atol, where))
        for part, got, expected in [
            ("x", np.asarray(run.grad_x)[rows], np.asarray(first.grad_x)[rows]),
            ("the parameters", _model(run.grad_layer), _model(first.grad_layer)),
        ]:
            if np.any(expected):
                error = norm_error(got, expected)
                where_part = f"gradient w.r.t. {part}, {where}"
                errors.append(
                    assert_close(check, layer, error, 1.0, gradient_rtol + atol, 0.0, where_part)
                )
    return max(errors)


class _Run(NamedTuple):
    """A layer's solution of a set, and the gradients of a linear function of its value."""

    solution: solvers.Solution
    grad_layer: AbstractSolvedAggregation
    grad_x: Float[Array, "n d"]


@eqx.filter_jit
def _solve_and_differentiate(layer, x, mask, weights):
    def loss(both):
        solution = both[0].solve(both[1], mask)
        return jnp.sum(weights * solution.value), solution

    (_, solution), grads = eqx.filter_value_and_grad(loss, has_aux=True)((layer, x))
    return solution, *grads


class _FiniteDifferences(NamedTuple):
    """Central differences of `Σ weights ⊙ target(x, mask)` along random unit directions,
    against the derivatives along them of `layer`'s gradient. `target` is `layer`, or the
    layer converged; then the solver's own parameters are left out (the implicit gradient
    does not reach them)."""

    layer: AbstractAggregation
    target: AbstractAggregation
    x: Float[Array, "n d"]
    mask: Bool[Array, " n"]
    weights: Float[Array, " k"]
    tolerance: float
    context: str

    def along_x(self, grad_x: Float[Array, "n d"], keys) -> float:
        """The relative error of the gradient w.r.t. the unmasked rows of `x`."""
        scale = _positive(data_scale(self.x, self.mask))
        directions = [
            jnp.where(self.mask[:, None], jax.random.normal(key, self.x.shape), 0) for key in keys
        ]
        return self._compare(
            lambda x: self._loss(self.target, x),
            self.x,
            directions,
            lambda direction: float(jnp.vdot(grad_x, direction)),
            scale,
            "x",
        )

    def along_parameters(self, grad_layer: AbstractAggregation, keys) -> float:
        """The relative error of the gradient w.r.t. the layer's floating-point leaves."""
        params, static = eqx.partition(self.target, eqx.is_inexact_array)
        flatten = inexact_leaves if self.target is self.layer else _model
        values = flatten(params)
        if not values.size:
            raise VacuousCheck(
                f"{CHECK}: the layer has no floating-point parameters ({self.context})"
            )
        scale = _positive(np.sqrt(np.mean(values**2)))
        return self._compare(
            lambda params: self._loss(eqx.combine(params, static), self.x),
            params,
            [_direction(params, key, keep_solver=flatten is inexact_leaves) for key in keys],
            lambda direction: float(np.dot(flatten(grad_layer), flatten(direction))),
            scale,
            "the parameters",
        )

    def _loss(self, layer: AbstractAggregation, x: Float[Array, "n d"]) -> float:
        """`Σ weights ⊙ layer(x, mask)`: `layer` compiled as in the other checks, or the
        converged layer, whose convergence is checked."""
        if self.target is self.layer:
            value = evaluate(layer, x, self.mask)
        else:
            solution = _solve(layer, x, self.mask)
            _require_converged(layer, solution, self.context)
            value = solution.value
        return float(jnp.vdot(self.weights, value))

    def _compare(
        self,
        loss: Callable[[PyTree], float],
        point: PyTree,
        directions: list[PyTree],
        derivative: Callable[[PyTree], float],
        scale: float,
        what: str,
    ) -> float:
        """Compare the derivatives along the unit `directions` with central differences of
        `loss` at `point`, at each step `scale · FINITE_DIFFERENCE_STEPS`. A central
        difference is known only to within its second difference,
        `|L(p + h) - 2 L(p) + L(p - h)| / h` (rounding and the solver's noise at small steps,
        curvature at large ones): a step passes when the derivatives are within `tolerance`
        of the differences plus that; the check passes when some step does. Returns the
        smallest relative error over the steps."""
        units = []
        for direction in directions:
            norm = float(np.linalg.norm(inexact_leaves(direction)))
            units.append(jax.tree_util.tree_map(lambda v, norm=norm: v / norm, direction))
        predicted = np.asarray([derivative(unit) for unit in units])
        center = loss(point)
        errors, passed = [], False
        for step in (scale * relative for relative in FINITE_DIFFERENCE_STEPS):
            plus = np.asarray([loss(_moved(point, unit, step)) for unit in units])
            minus = np.asarray([loss(_moved(point, unit, -step)) for unit in units])
            measured = (plus - minus) / (2 * step)
            uncertainty = np.linalg.norm(plus - 2 * center + minus) / step
            if np.linalg.norm(measured) <= uncertainty:
                continue  # the differences do not resolve the derivative at this step
            error = np.linalg.norm(predicted - measured)
            errors.append(float(error / np.linalg.norm(measured)))
            passed |= error <= self.tolerance * np.linalg.norm(measured) + uncertainty
        if not errors:
            raise VacuousCheck(
                f"{CHECK}: the finite differences w.r.t. {what} are within their own "
                f"uncertainty at every step: no gradient to compare ({self.context})"
            )
        if not passed:
            against = type(self.target).__name__
            if isinstance(self.target, AbstractSolvedAggregation):
                against += f" under {_name(self.target.solver)}"
            raise PropertyViolation(
                CHECK,
                min(errors),
                self.tolerance,
                f"{CHECK} violated by {type(self.layer).__name__}: the gradient w.r.t. {what} "
                f"along {len(units)} random directions differs from central differences of "
                f"{against} by {min(errors):.3g} (relative 2-norm error, the smallest over "
                f"steps {FINITE_DIFFERENCE_STEPS} times {scale:.3g}; allowed "
                f"{self.tolerance:.3g} beyond the differences' uncertainty); {self.context}",
            )
        return min(errors)


@eqx.filter_jit
def _solve(layer, x, mask) -> solvers.Solution:
    return layer.solve(x, mask)


def _require_converged(
    layer: AbstractSolvedAggregation, solution: solvers.Solution, context: str
) -> None:
    """`VacuousCheck` unless the converged reference did converge."""
    if not np.all(solution.stats.converged):
        raise VacuousCheck(
            f"{CHECK}: the converged reference, {type(layer).__name__} under "
            f"{_name(layer.solver)}, did not converge (residual "
            f"{float(np.max(solution.stats.grad_max_norm)):.3g}), so there is no gradient to "
            f"compare with; pass reference= a backend that converges on this set ({context})"
        )


def _moved(point: PyTree, direction: PyTree, distance: float) -> PyTree:
    """`point + distance · direction`."""
    return jax.tree_util.tree_map(lambda p, v: p + distance * v, point, direction)


def _direction(params: PyTree, key, keep_solver: bool) -> PyTree:
    """A random direction in parameter space; zero on the solver's leaves unless kept."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    normal = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    direction = jax.tree_util.tree_unflatten(treedef, normal)
    if keep_solver or not isinstance(direction, AbstractSolvedAggregation):
        return direction
    zeros = lambda solver: jax.tree_util.tree_map(jnp.zeros_like, solver)  # noqa: E731
    return eqx.tree_at(lambda m: m.solver, direction, replace_fn=zeros)


def _name(backend: solvers.AbstractBackend) -> str:
    return f"{type(backend).__name__}({type(backend.method).__name__}, steps={backend.steps})"


def _float64(layer: AbstractAggregation) -> AbstractAggregation:
    """`layer` with every floating-point array leaf cast to float64."""
    return jax.tree_util.tree_map(
        lambda leaf: leaf.astype(jnp.float64) if eqx.is_inexact_array(leaf) else leaf, layer
    )


def _converged(layer, reference: solvers.AbstractBackend | None):
    """The layer under `reference`, or converged under Implicit with a dense solve."""
    return converged_reference(layer) if reference is None else layer.with_solver(reference)


def _model(grad_layer: PyTree) -> np.ndarray:
    """The floating-point leaves of a layer (or its gradient) but its solver's."""
    if isinstance(grad_layer, AbstractSolvedAggregation):
        grad_layer = eqx.tree_at(lambda m: m.solver, grad_layer, None)
    return inexact_leaves(grad_layer)


def _measured(got: ArrayLike, converged: ArrayLike, what: str, context: str) -> float:
    """The relative 2-norm error of an approximate gradient against the converged one."""
    if not np.any(np.asarray(converged)):
        raise VacuousCheck(f"{CHECK}: the converged gradient w.r.t. {what} is zero ({context})")
    return norm_error(got, converged)


def _positive(scale: float) -> float:
    """`scale`, or 1 where it is zero."""
    return float(scale) if scale > 0 else 1.0
