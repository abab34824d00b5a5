"""Change the inner steps of every solved layer of a model: fewer in training than at test."""

from typing import TypeVar

import jax

import solvers

Model = TypeVar("Model")


def with_inner_steps(model: Model, steps: int) -> Model:
    """`model` with every differentiation backend in it (each solved layer's `solver`) given
    `steps` inner steps, all else kept, learned step sizes included.

    The paper's appendix E.2 suggests fewer inner steps in training than at test: train with
    `Unrolled(5)`, evaluate `with_inner_steps(model, 20)`. Truncated keeps `min(k, steps)`
    taped steps; for Implicit `steps` is the forward's cap. A `steps` that is not a positive
    int raises, as the backends' constructors do.
    """

    def replace(node):
        if isinstance(node, solvers.AbstractBackend):
            return node.with_steps(steps)
        return node

    is_backend = lambda node: isinstance(node, solvers.AbstractBackend)  # noqa: E731
    return jax.tree_util.tree_map(replace, model, is_leaf=is_backend)
