"""Principal Neighbourhood Aggregation (Corso et al., 2020) as a set pooling."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._segments import (
    segment_counts,
    segment_masked_max,
    segment_masked_mean,
    segment_masked_min,
)
from ._abstract import AbstractPooling


class PNA(AbstractPooling):
    """Principal Neighbourhood Aggregation: four aggregators times three degree scalers
    (Corso et al., 2020, eq. 8).

    Aggregators: mean, max, min and standard deviation `√(E[(x − E[x])²] + ε)` (PyG's
    `√(relu(E[x²] − E[x]²) + ε)`, computed without its cancellation).
    Scalers of a set of `n` elements: identity, amplification `log(n+1)/δ` and attenuation
    `δ/log(n+1)`, where `δ` is the average `log(n+1)` over the training sets. The output
    concatenates one block per (scaler, aggregator), scalers outermost: `[n, d] → [12 d]`.
    It has no parameters (PNA's post-aggregation layer is the model's next layer). An empty set
    pools to zeros.

    **Arguments:**

    - `delta`: `δ`, the mean of `log(n + 1)` over the training sets (must be positive).
    - `eps`: `ε` of the standard deviation.
    """

    delta: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, delta: float = 1.0, eps: float = 1e-5):
        if not delta > 0:
            raise ValueError(f"delta must be positive, got {delta}")
        self.delta = delta
        self.eps = eps

    def output_size(self, in_size: int) -> int:
        return 12 * in_size

    def _segments(
        self,
        x: Float[Array, "n d"],
        segment_ids: Int[Array, " n"],
        num_segments: int,
        mask: Bool[Array, " n"],
    ) -> Float[Array, "s m"]:
        x = jnp.where(mask[:, None], x, 0)  # else x² of a NaN or inf masked row: NaN gradient
        counts = segment_counts(segment_ids, num_segments, mask, x.dtype)
        mean = segment_masked_mean(x, segment_ids, num_segments, mask)
        # E[(x - E[x])²], not E[x²] - E[x]²: that cancels to rounding noise for a set of equal
        # values, which the sqrt near ε amplifies (padding then changed the output by 1e-10)
        centered = jnp.where(mask[:, None], x - mean[segment_ids], 0)
        variance = segment_masked_mean(centered**2, segment_ids, num_segments, mask)
        std = jnp.sqrt(variance + self.eps)
        top = segment_masked_max(x, segment_ids, num_segments, mask)
        bottom = segment_masked_min(x, segment_ids, num_segments, mask)
        aggregates = jnp.concatenate([mean, top, bottom, std], axis=-1)
        log_n = jnp.log(jnp.where(counts > 0, counts, 1) + 1)[:, None]  # finite when empty
        scaled = jnp.concatenate(
            [aggregates, aggregates * log_n / self.delta, aggregates * self.delta / log_n],
            axis=-1,
        )
        return jnp.where(counts[:, None] > 0, scaled, 0)
