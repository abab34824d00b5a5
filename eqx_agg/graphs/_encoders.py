"""Embeddings of OGB's categorical atom and bond features (OGB's `AtomEncoder`/`BondEncoder`)."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

ATOM_FEATURE_DIMS = (119, 5, 12, 12, 10, 6, 6, 2, 2)
"""Vocabulary size of each of the 9 atom features of `ogb.utils.smiles2graph`
(= `ogb.utils.features.get_atom_feature_dims()`)."""

BOND_FEATURE_DIMS = (5, 6, 2)
"""Vocabulary size of each of the 3 bond features (= `get_bond_feature_dims()`)."""


class FeatureEmbedding(eqx.Module):
    """Sum of one learned embedding per categorical feature (OGB's `AtomEncoder`).

    `embed(x)[i] = Σ_k table_k[x[i, k]]`, tables initialised Xavier-uniform as in OGB.
    Use `FeatureEmbedding(ATOM_FEATURE_DIMS, size)` for atoms and
    `FeatureEmbedding(BOND_FEATURE_DIMS, size)` for bonds.

    **Arguments:**

    - `vocab_sizes`: the number of categories of each feature column.
    - `size`: embedding width.
    - `key`: a `jax.random` key.

    Shapes: `x: [n, len(vocab_sizes)]` integers → `[n, size]`. Out-of-range categories are
    clamped by JAX's indexing, so featurise with the same vocabulary.
    """

    tables: tuple[Float[Array, "_v d"], ...]

    def __init__(self, vocab_sizes: Sequence[int], size: int, *, key: PRNGKeyArray):
        if len(vocab_sizes) == 0 or min(vocab_sizes) < 1:
            raise ValueError(f"vocab_sizes must be positive sizes, got {tuple(vocab_sizes)}")
        keys = jax.random.split(key, len(vocab_sizes))
        init = jax.nn.initializers.glorot_uniform()
        self.tables = tuple(
            init(k, (v, size), jnp.result_type(float))
            for k, v in zip(keys, vocab_sizes, strict=True)
        )

    def __call__(self, x: Int[Array, "n f"]) -> Float[Array, "n d"]:
        if x.ndim != 2 or x.shape[1] != len(self.tables):
            raise ValueError(
                f"x must have shape [n, {len(self.tables)}] (one column per feature), "
                f"got shape {x.shape}"
            )
        return sum(table[x[:, k]] for k, table in enumerate(self.tables))
