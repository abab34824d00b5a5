"""Multi-head attention pooling with learned queries."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._segments import segment_counts, segment_max, segment_sum
from ._abstract import AbstractPooling


class MultiHeadAttention(AbstractPooling):
    """Attention pooling with one learned query per head (paper section 5.1; the pooling
    by multi-head attention of Lee et al., 2019, with one seed vector).

    Head `h` attends over the set with its query `q_h`: `a_ih = softmax_i(q_h·k_ih / √w)`,
    `out_h = Σ_i a_ih v_ih`, where `k_i = W_k x_i`, `v_i = W_v x_i` are split into `num_heads`
    heads of width `w = out_size / num_heads`. The heads are concatenated; an empty set
    pools to zeros.

    **Arguments:**

    - `in_size`: element size `d`; `out_size`: pooled size `m` (paper: `D`).
    - `num_heads`: number of heads (paper: 4), must divide `out_size`.
    - `key`: a `jax.random` key.
    """

    keys: eqx.nn.Linear
    values: eqx.nn.Linear
    queries: Float[Array, "h w"]
    in_size: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, num_heads: int = 4, *, key: PRNGKeyArray):
        if num_heads < 1 or out_size % num_heads:
            raise ValueError(
                f"num_heads must be a positive divisor of out_size = {out_size}, got {num_heads}"
            )
        k_keys, k_values, k_queries = jax.random.split(key, 3)
        self.keys = eqx.nn.Linear(in_size, out_size, key=k_keys)
        self.values = eqx.nn.Linear(in_size, out_size, key=k_values)
        width = out_size // num_heads
        self.queries = jax.random.normal(k_queries, (num_heads, width)) / jnp.sqrt(width)
        self.in_size = in_size
        self.num_heads = num_heads

    def output_size(self, in_size: int) -> int:
        if in_size != self.in_size:
            raise ValueError(
                f"MultiHeadAttention was built for elements of size {self.in_size}, "
                f"got elements of size {in_size}"
            )
        return self.queries.size

    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s m"]:
        heads, width = self.queries.shape
        x = jnp.where(mask[:, None], x, 0)  # a NaN or inf in a masked row: 0 · inf is NaN
        k = jax.vmap(self.keys)(x).reshape(-1, heads, width)
        v = jax.vmap(self.values)(x).reshape(-1, heads, width)
        logits = jnp.einsum("nhw,hw->nh", k, self.queries) / jnp.sqrt(width)
        logits = jnp.where(mask[:, None], logits, -jnp.inf)
        top = segment_max(logits, segment_ids, num_segments)
        top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0))
        weights = jnp.where(mask[:, None], jnp.exp(logits - top[segment_ids]), 0)
        normaliser = segment_sum(weights, segment_ids, num_segments)
        pooled = segment_sum(weights[:, :, None] * v, segment_ids, num_segments)
        pooled = pooled / jnp.where(normaliser > 0, normaliser, 1)[:, :, None]
        counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
        return jnp.where(counts[:, None] > 0, pooled.reshape(num_segments, -1), 0)
