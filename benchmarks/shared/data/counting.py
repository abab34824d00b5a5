"""Class-counting sets (paper section 5.2): images of 1–10 distinct classes, label the count.

Two sources behind one interface, `ImageClasses(images, labels)`:

- `load_digits(...)` — scikit-learn's bundled handwritten digits (8×8, 10 classes), split by
  image into train and test; the embedded default (no download).
- `load_omniglot(data_dir, ...)` — Omniglot in its standard unzipped layout,
  `images_background/<alphabet>/<character>/*.png` (train) and `images_evaluation/...`
  (test), resized to 32×32; each (alphabet, character) directory is one class.
"""

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class ImageClasses:
    """Greyscale images in `[0, 1]` (strokes bright) and their integer class labels.

    **Arguments:**

    - `images`: `[N, H, W]` float32; `labels`: `[N]` ints, classes numbered from 0.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.ndim != 3 or self.labels.shape != (len(self.images),):
            raise ValueError(
                f"images must be [N, H, W] and labels [N], got shapes {self.images.shape} "
                f"and {self.labels.shape}"
            )

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.labels))


def load_digits(test_fraction: float = 0.5, seed: int = 0) -> tuple[ImageClasses, ImageClasses]:
    """scikit-learn's 1797 handwritten digits (8×8, values scaled to `[0, 1]`), split by
    image into `(train, test)` with `test_fraction` of each class's images in test."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: int(round(test_fraction * len(members)))]] = True
    return ImageClasses(images[~test], labels[~test]), ImageClasses(images[test], labels[test])


OMNIGLOT_LAYOUT = (
    "<data-dir>/images_background/<alphabet>/<character>/*.png (train) and "
    "<data-dir>/images_evaluation/<alphabet>/<character>/*.png (test), as unzipped from the "
    "Omniglot repository (github.com/brendenlake/omniglot, python/images_*.zip)"
)


def load_omniglot(data_dir, size: int = 32) -> tuple[ImageClasses, ImageClasses]:
    """Omniglot from `data_dir`: `(train, test)` = (`images_background`,
    `images_evaluation`), each image resized to `size × size` with strokes as 1.

    Raises `FileNotFoundError` / `ValueError` naming the expected layout when `data_dir`
    is missing, incomplete or holds no images.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Omniglot data directory {root} does not exist; expected {OMNIGLOT_LAYOUT}"
        )
    return tuple(_load_omniglot_split(root / split, size) for split in _OMNIGLOT_SPLITS)


_OMNIGLOT_SPLITS = ("images_background", "images_evaluation")


def _load_omniglot_split(directory: Path, size: int) -> ImageClasses:
    from PIL import Image

    if not directory.is_dir():
        raise FileNotFoundError(f"missing {directory}; expected {OMNIGLOT_LAYOUT}")
    characters = sorted(c for a in directory.iterdir() if a.is_dir() for c in a.iterdir())
    characters = [c for c in characters if c.is_dir()]
    if not characters:
        raise ValueError(
            f"{directory} holds no <alphabet>/<character>/ directories; expected {OMNIGLOT_LAYOUT}"
        )
    images, labels = [], []
    for label, character in enumerate(characters):
        files = sorted(character.glob("*.png"))
        if not files:
            raise ValueError(f"{character} holds no .png images; expected {OMNIGLOT_LAYOUT}")
        for file in files:
            try:
                image = Image.open(file).convert("L").resize((size, size), Image.BILINEAR)
            except OSError as error:
                raise ValueError(f"{file} is not a readable image: {error}") from error
            images.append(1.0 - np.asarray(image, np.float32) / 255.0)
            labels.append(label)
    return ImageClasses(np.stack(images), np.asarray(labels, np.int32))


def sample_counting_sets(
    rng: np.random.Generator,
    data: ImageClasses,
    num_sets: int,
    set_size: int = 16,
    max_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """`num_sets` sets of `set_size` images and their number of distinct classes.

    Each set draws a count `k` uniformly from `1..max_classes`, `k` distinct classes, one
    image of each, then the remaining `set_size − k` images from those classes at random
    (distinct images of a class while it has enough), and shuffles. Returns images
    `[num_sets, set_size, H, W]` and counts `[num_sets]` in `1..max_classes`.
    """
    classes = np.unique(data.labels)
    if len(classes) < max_classes or set_size < max_classes:
        raise ValueError(
            f"need at least max_classes = {max_classes} classes and set_size >= max_classes, "
            f"got {len(classes)} classes and set_size = {set_size}"
        )
    members = {c: np.flatnonzero(data.labels == c) for c in classes}
    counts = rng.integers(1, max_classes + 1, num_sets)
    index = np.empty((num_sets, set_size), np.int64)
    for s, k in enumerate(counts):
        chosen = rng.choice(classes, k, replace=False)
        slots = np.concatenate([chosen, rng.choice(chosen, set_size - k)])
        picked = [
            rng.choice(members[c], n, replace=n > len(members[c]))
            for c, n in zip(*np.unique(slots, return_counts=True), strict=True)
        ]
        index[s] = rng.permutation(np.concatenate(picked))
    return data.images[index], counts.astype(np.int32)
