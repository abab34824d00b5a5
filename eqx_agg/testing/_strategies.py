"""Hypothesis strategies for the inputs that break aggregation layers.

Every strategy draws the values themselves (ties, duplicates, scales, offsets), not a size
and a seed, and pads each set to a fixed row count, so that a jitted layer compiles once per
shape and dtype however many examples hypothesis draws.
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Bool, Float, Int

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as error:  # an optional dependency: the `testing` extra
    raise ImportError("eqx_agg.testing needs hypothesis: pip install 'eqx_agg[testing]'") from error

MAX_SET = 30
"""Default row count every drawn set is padded to."""

SCALES = (1e-3, 1e-2, 1.0, 1e2, 1e3)
"""Default scales a set's values are drawn at."""

OFFSETS = (0.0, 3.0, -100.0)
"""Default offsets added to a set's values (before scaling): sets far from the origin."""

LEVELS = (-1.0, -0.5, 0.0, 0.25, 1.0)
"""Values drawn often, so that sets hold ties and duplicate elements."""

PADDING = (np.nan, np.inf, -np.inf, 1e30, -1e30)
"""Default values of the masked rows: a layer must ignore them, not merely find them small."""

DTYPES = (np.float64, np.float32)
"""Default dtypes of the drawn arrays."""


class DrawnSet(NamedTuple):
    """One set padded to a fixed row count: `x: [rows, d]`, `mask: [rows]` (True on the set's
    elements, which may sit anywhere among the rows)."""

    x: Float[np.ndarray, "rows d"]
    mask: Bool[np.ndarray, " rows"]


class DrawnSegments(NamedTuple):
    """Several sets stored together, as `layer.segments` takes them: row `i` of `x: [rows, d]`
    belongs to set `segment_ids[i]` (in `[0, num_segments)`) and counts where `mask[i]`."""

    x: Float[np.ndarray, "rows d"]
    segment_ids: Int[np.ndarray, " rows"]
    num_segments: int
    mask: Bool[np.ndarray, " rows"]


def _elements(draw, n: int, d: int, scales, offsets, dtype) -> Float[np.ndarray, "n d"]:
    """`n` elements of size `d` at a drawn scale and offset, in `dtype`. Two or more elements
    are never all equal, even rounded to float32, as JAX without x64 rounds float64 arrays
    (permuting such a set would test nothing)."""
    element = st.one_of(
        st.sampled_from(LEVELS), st.floats(-1, 1, allow_nan=False, allow_infinity=False)
    )
    values = draw(hnp.arrays(np.float64, (n, d), elements=element))
    scale = draw(st.sampled_from(scales))
    offset = draw(st.sampled_from(offsets))
    x = (scale * (values + offset)).astype(dtype)
    coarse = x.astype(np.float32)
    if n >= 2 and np.all(coarse == coarse[0]):
        x[-1] += scale
    return x


def _padded(draw, elements: Float[np.ndarray, "n d"], rows: int, padding) -> np.ndarray:
    """`elements` followed by `rows - n` rows of drawn `padding` values, in their dtype."""
    n, d = elements.shape
    x = np.empty((rows, d), elements.dtype)
    x[:n] = elements
    if rows > n:
        x[n:] = draw(hnp.arrays(np.float64, (rows - n, d), elements=st.sampled_from(padding)))
    return x


def sets(
    d: int,
    *,
    min_size: int = 1,
    max_size: int = MAX_SET,
    scales=SCALES,
    offsets=OFFSETS,
    padding=PADDING,
    dtypes=DTYPES,
    shuffle: bool = True,
) -> st.SearchStrategy[DrawnSet]:
    """A strategy for one set of `n` elements of size `d`, `min_size <= n <= max_size`,
    padded to `max_size` rows.

    The elements are drawn values in `[-1, 1]`, often one of a few levels (ties, duplicate
    elements), plus a drawn offset (`offsets`), times a drawn scale (`scales`); the masked
    rows hold values drawn from `padding` (NaN, ±inf, ±1e30 by default). With `shuffle` the
    elements sit at drawn rows among the padding; otherwise they are the first `n` rows.

    **Arguments:**

    - `d`: the element size; `min_size`, `max_size`: bounds on the set's size `n`.
    - `scales`, `offsets`, `padding`, `dtypes`: sequences to draw from.
    - `shuffle`: whether the elements may sit anywhere among the rows.

    **Returns:** a strategy of [`eqx_agg.testing.DrawnSet`][] (`x: [max_size, d]` of a drawn
    dtype, `mask: [max_size]`).
    """
    if not 0 <= min_size <= max_size or max_size < 1 or d < 1:
        raise ValueError(
            f"need d >= 1 and 0 <= min_size <= max_size, max_size >= 1, got d = {d}, "
            f"min_size = {min_size}, max_size = {max_size}"
        )

    @st.composite
    def draw_sets(draw) -> DrawnSet:
        n = draw(st.integers(min_size, max_size))
        dtype = draw(st.sampled_from(dtypes))
        x = _padded(draw, _elements(draw, n, d, scales, offsets, dtype), max_size, padding)
        mask = np.arange(max_size) < n
        if shuffle:
            order = np.asarray(draw(st.permutations(range(max_size))))
            x, mask = x[order], mask[order]
        return DrawnSet(x, mask)

    return draw_sets()


def segmented_sets(
    d: int,
    *,
    num_segments: int = 3,
    max_size: int = MAX_SET,
    scales=SCALES,
    offsets=OFFSETS,
    padding=PADDING,
    dtypes=DTYPES,
    shuffle: bool = True,
) -> st.SearchStrategy[DrawnSegments]:
    """A strategy for `num_segments` sets stored together, each of `0 <= n <= max_size`
    elements of size `d` (set 0 has at least one, the others may be empty), each at its own
    scale and offset, each padded to `max_size` rows (so `num_segments · max_size` rows in
    all); values as for [`eqx_agg.testing.sets`][].

    **Arguments:**

    - `d`: the element size; `num_segments`: the number of sets; `max_size`: the largest set.
    - `scales`, `offsets`, `padding`, `dtypes`: sequences to draw from.
    - `shuffle`: whether the sets' rows are interleaved (`segments` must not rely on each set
      being contiguous) or stored set after set, elements first.

    **Returns:** a strategy of [`eqx_agg.testing.DrawnSegments`][].
    """
    if num_segments < 1 or max_size < 1 or d < 1:
        raise ValueError(
            f"need d, num_segments and max_size >= 1, got d = {d}, num_segments = "
            f"{num_segments}, max_size = {max_size}"
        )

    @st.composite
    def draw_segmented_sets(draw) -> DrawnSegments:
        dtype = draw(st.sampled_from(dtypes))
        blocks, masks = [], []
        for segment in range(num_segments):
            n = draw(st.integers(1 if segment == 0 else 0, max_size))
            elements = _elements(draw, n, d, scales, offsets, dtype)
            blocks.append(_padded(draw, elements, max_size, padding))
            masks.append(np.arange(max_size) < n)
        x, mask = np.concatenate(blocks), np.concatenate(masks)
        segment_ids = np.repeat(np.arange(num_segments, dtype=np.int32), max_size)
        if shuffle:
            order = np.asarray(draw(st.permutations(range(len(x)))))
            x, mask, segment_ids = x[order], mask[order], segment_ids[order]
        return DrawnSegments(x, segment_ids, num_segments, mask)

    return draw_segmented_sets()
