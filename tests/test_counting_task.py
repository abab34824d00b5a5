"""The class-counting task: set sampler, digits and Omniglot loaders, a quick training run."""

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks.shared.data.counting import (
    ImageClasses,
    load_digits,
    load_omniglot,
    sample_counting_sets,
)
from benchmarks.tasks import counting


def labelled_images(num_classes: int, per_class: int) -> ImageClasses:
    """Images whose every pixel holds their class, so a set's classes can be read back."""
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    images = np.broadcast_to(labels[:, None, None], (len(labels), 2, 2)).astype(np.float32)
    return ImageClasses(images, labels)


def test_sampler_counts_distinct_classes():
    data = labelled_images(12, 5)
    images, counts = sample_counting_sets(np.random.default_rng(0), data, 400)
    assert images.shape == (400, 16, 2, 2) and counts.shape == (400,)
    distinct = np.array([len(np.unique(s[:, 0, 0])) for s in images])
    np.testing.assert_array_equal(distinct, counts)
    assert set(counts) == set(range(1, 11))  # every count from 1 to 10 occurs
    assert np.all(np.bincount(counts)[1:] > 20)  # roughly uniform
    # Few images per class: a set of one class repeats images only when it must.
    images, counts = sample_counting_sets(np.random.default_rng(1), labelled_images(10, 20), 50)
    with pytest.raises(ValueError, match="at least max_classes = 10 classes"):
        sample_counting_sets(np.random.default_rng(0), labelled_images(9, 5), 3)


def test_sampler_is_deterministic_and_respects_sizes():
    data = labelled_images(6, 4)
    a = sample_counting_sets(np.random.default_rng(3), data, 20, set_size=8, max_classes=5)
    b = sample_counting_sets(np.random.default_rng(3), data, 20, set_size=8, max_classes=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (20, 8, 2, 2) and a[1].min() >= 1 and a[1].max() <= 5


def test_digits_split_by_image():
    train, test = load_digits()
    assert train.images.shape[1:] == (8, 8) and train.num_classes == test.num_classes == 10
    assert len(train.labels) + len(test.labels) == 1797
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0
    flat_train = {im.tobytes() for im in train.images}
    assert sum(im.tobytes() in flat_train for im in test.images) < 0.05 * len(test.labels)


def write_omniglot(root, classes_per_split: int = 11, per_class: int = 2):
    """A tiny Omniglot tree: black strokes on white 20×20 PNGs."""
    for split in ("images_background", "images_evaluation"):
        for c in range(classes_per_split):
            alphabet = f"Alphabet_{c % 2}"
            folder = root / split / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((20, 20), 255, np.uint8)
                pixels[: c + 1, :] = 0  # class c: c + 1 black rows
                Image.fromarray(pixels).save(folder / f"{c:02d}_{i}.png")


def test_omniglot_loader_reads_the_standard_layout(tmp_path):
    write_omniglot(tmp_path)
    train, test = load_omniglot(tmp_path, size=8)
    assert train.images.shape == (22, 8, 8) and test.images.shape == (22, 8, 8)
    assert train.num_classes == 11 and np.all(np.bincount(train.labels) == 2)
    # Strokes (black) become 1, background 0; more black rows, more ink.
    ink = np.array([train.images[train.labels == c].mean() for c in range(11)])
    assert train.images.max() == pytest.approx(1.0) and train.images.min() == pytest.approx(0.0)
    assert np.all(np.diff(ink[np.argsort(ink)]) >= 0) and ink.min() < ink.max()


def test_omniglot_loader_explains_bad_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_background/<alphabet>/<character>"):
        load_omniglot(tmp_path / "nowhere")
    (tmp_path / "images_background").mkdir()
    with pytest.raises(ValueError, match="holds no <alphabet>/<character>/ directories"):
        load_omniglot(tmp_path)
    (tmp_path / "images_background" / "Alphabet" / "character01").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no .png images"):
        load_omniglot(tmp_path)
    (tmp_path / "images_background" / "Alphabet" / "character01" / "a.png").write_text("no")
    with pytest.raises(ValueError, match="not a readable image"):
        load_omniglot(tmp_path)
    write_omniglot(tmp_path / "only_background")
    import shutil

    shutil.rmtree(tmp_path / "only_background" / "images_evaluation")
    with pytest.raises(FileNotFoundError, match="missing .*images_evaluation"):
        load_omniglot(tmp_path / "only_background")


@pytest.mark.slow
def test_quick_digits_run_lowers_the_loss(tmp_path):
    counting.main(["--quick", "--steps", "30", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in payload["records"]] == ["sum", "attention", "ea", "otke", "rotp"]
    assert (tmp_path / "counting_accuracy.png").stat().st_size > 0
    for name in ("sum", "attention", "ea", "otke", "rotp"):
        lines = (tmp_path / "logs" / f"{name}.jsonl").read_text().splitlines()
        evals = [json.loads(line) for line in lines if '"eval"' in line]
        assert [e["step"] for e in evals] == [0, 10, 20, 30]
        assert evals[-1]["train_cross_entropy"] < evals[0]["train_cross_entropy"]


@pytest.mark.slow
def test_quick_omniglot_run_learns_the_synthetic_classes(tmp_path):
    """Omniglot's layout, loaded and trained on: the loss of the conv encoder falls."""
    write_omniglot(tmp_path / "omniglot", classes_per_split=10)
    counting.main(
        ["--quick", "--data", "omniglot", "--data-dir", str(tmp_path / "omniglot"),
         "--models", "sum", "--steps", "30", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["config"]["train_images"] == 20 and payload["config"]["encoder"] == "conv"
    lines = (tmp_path / "out" / "logs" / "sum.jsonl").read_text().splitlines()
    evals = [json.loads(line) for line in lines if '"eval"' in line]
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    assert evals[-1]["train_cross_entropy"] < evals[0]["train_cross_entropy"]
