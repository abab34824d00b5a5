"""Class counting (paper section 5.2): count the distinct classes in a set of 16 images.

Each set holds 1-10 distinct classes; the model encodes every image with a convolutional
ResNet [16, 32, 64] and a linear projection to an embedding, pools (sum, 4-head attention
with learned queries, EA with a ResNet potential, OTKE or ROTP), and predicts the count
with a 10-way softmax from a ResNet [128, 10]. On Omniglot (train on images_background,
test on images_evaluation, 32x32) the defaults are the paper's: 256-d embedding, potential
[512, 512, 32], 10 inner steps. The embedded default, scikit-learn's 8x8 digits split by
image, is a CPU budget and encodes each image with a residual MLP [128, 64] on its 64
pixels: the conv ResNet stayed at chance accuracy on 8x8 digits within that budget
(--encoder conv selects it). Plots train and test accuracy over training (Figure 4b).

examples:
  python -m benchmarks counting
  python -m benchmarks counting --models sum ea --steps 3000
  python -m benchmarks counting --data omniglot --data-dir ~/data/omniglot
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_agg

from ..shared import cli, training
from ..shared.data.counting import load_digits, load_omniglot, sample_counting_sets
from ..shared.results import Results
from .models import LABELS, POOLINGS, ConvEncoder, FlatEncoder, SetModel

ABOUT = (
    "Class counting (paper 5.2): accuracy of the predicted number of distinct classes in "
    "sets of 16 images, per pooling, after the same number of Adam steps (`test_accuracy`: "
    "at the end; `best_test_accuracy`: at the best evaluation)."
)
PAPER = {"embed": 256, "potential": [512, 512, 32], "encoder": "conv"}
DIGITS = {"embed": 64, "potential": [128, 128, 32], "encoder": "mlp"}


def build_model(
    name: str,
    image_size: int,
    embed: int,
    potential: tuple[int, ...],
    backend,
    channels=(16, 32, 64),
    max_classes: int = 10,
    encoder: str = "conv",
    *,
    key,
) -> SetModel:
    """The section 5.2 model with pooling `name`; `encoder="conv"` is the paper's conv
    ResNet with `channels`, `"mlp"` a residual MLP `[128, embed]` on the flattened image."""
    k_encoder, k_pool, k_decoder = jax.random.split(key, 3)
    if encoder == "conv":
        encoder = ConvEncoder(image_size, channels, embed, key=k_encoder)
    else:
        encoder = FlatEncoder(image_size, (128, embed), key=k_encoder)
    solver = backend if name == "ea" else None  # OTKE and ROTP keep their own
    pool = eqx_agg.make_pooling(name, embed, solver=solver, widths=potential, key=k_pool)
    decoder = eqx_agg.ResidualMLP(pool.output_size(embed), (128, max_classes), key=k_decoder)
    return SetModel(encoder, pool, decoder)


def model_from_args(args: argparse.Namespace, name: str, train_data, backend) -> SetModel:
    """`build_model` with the sizes of `args` for `train_data`'s images, seeded by `--seed`."""
    return build_model(
        name, train_data.images.shape[-1], args.embed, tuple(args.potential), backend,
        tuple(args.channels), args.max_classes, args.encoder, key=jax.random.PRNGKey(args.seed + 1),
    )  # fmt: skip


def make_loss(aux_weight: float):
    """Cross-entropy of the count (`count − 1` as the class), plus `aux_weight ×` the EA
    auxiliary loss."""

    def loss_fn(model, batch, key):
        images, counts = batch
        logits, aux = jax.vmap(model)(images)
        labels = counts - 1
        ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
        metrics = {"cross_entropy": ce, "accuracy": accuracy, "aux": jnp.mean(aux)}
        return ce + aux_weight * jnp.mean(aux), metrics

    return loss_fn


@eqx.filter_jit
def _scores(model, images, counts):
    logits, _ = jax.vmap(model)(images)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, counts - 1)
    return jnp.sum(jnp.argmax(logits, -1) == counts - 1), jnp.sum(ce)


def scores(model, images, counts, chunk: int = 256) -> tuple[float, float]:
    """Accuracy (count predicted exactly) and mean cross-entropy over a fixed sample of
    sets, in chunks of `chunk` sets."""
    totals = np.zeros(2)
    for i in range(0, len(images), chunk):
        totals += [float(v) for v in _scores(model, images[i : i + chunk], counts[i : i + chunk])]
    return totals[0] / len(images), totals[1] / len(images)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The task's flags, with the data set's default sizes (and --quick's) filled in."""
    parser = cli.parser("counting", __doc__)
    group = parser.add_argument_group("task")
    group.add_argument("--data", choices=["digits", "omniglot"], default="digits", help="data")
    group.add_argument("--data-dir", help="Omniglot root (holding images_background/ ...)")
    group.add_argument(
        "--models", nargs="+", choices=POOLINGS, default=list(POOLINGS),
        help="the poolings compared",
    )  # fmt: skip
    group.add_argument(
        "--embed", type=cli.positive_int, help="embedding size (digits: 64, omniglot: 256)"
    )
    group.add_argument(
        "--potential", type=cli.positive_int, nargs="+",
        help="EA potential widths (digits: 128 128 32; omniglot: 512 512 32)",
    )  # fmt: skip
    group.add_argument(
        "--encoder", choices=["conv", "mlp"], help="image encoder (digits: mlp, omniglot: conv)"
    )
    group.add_argument(
        "--channels", type=cli.positive_int, nargs="+", default=[16, 32, 64],
        help="conv ResNet block channels",
    )  # fmt: skip
    group.add_argument("--set-size", type=cli.positive_int, default=16, help="images per set")
    group.add_argument(
        "--max-classes", type=cli.positive_int, default=10, help="most classes in a set"
    )
    group.add_argument(
        "--batch-size", type=cli.positive_int, default=32, help="sets per step (paper: 8)"
    )
    group.add_argument(
        "--eval-sets", type=cli.positive_int, default=512, help="fixed sets per evaluation"
    )
    group.add_argument("--out", default="results/counting", help="output folder")
    group.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, few steps")
    training.add_training_flags(parser, steps=1500, lr=1e-3, eval_every=100)
    training.add_backend_flags(parser, inner_steps=10)
    args = parser.parse_args(argv)
    sizes = PAPER if args.data == "omniglot" else DIGITS
    args.embed = args.embed or sizes["embed"]
    args.potential = args.potential or sizes["potential"]
    args.encoder = args.encoder or sizes["encoder"]
    if args.quick:
        args.embed, args.potential, args.channels = 8, [16, 8], [4, 8]
        args.batch_size, args.eval_sets = 8, 32
        args.steps, args.eval_every = min(args.steps, 30), 10
    if args.data == "omniglot" and args.data_dir is None:
        parser.error("--data omniglot needs --data-dir (the directory holding images_background)")
    return args


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


def task_data(args: argparse.Namespace):
    """The images and the task's batches: `(train_data, test_data, next_batch, evaluate)`,
    `next_batch(step)` the training sets of `step`, `evaluate(model, step)` the accuracy and
    cross-entropy on fixed train and test sets (`train_accuracy`, `test_accuracy`, ...)."""
    if args.data == "omniglot":
        train_data, test_data = load_omniglot(args.data_dir)
    else:
        train_data, test_data = load_digits(seed=args.seed)

    def sample(data, seed, num_sets):
        rng = np.random.default_rng(seed)
        return sample_counting_sets(rng, data, num_sets, args.set_size, args.max_classes)

    train_eval = sample(train_data, [args.seed, 1], args.eval_sets)
    test_eval = sample(test_data, [args.seed, 2], args.eval_sets)

    def next_batch(step):
        return sample(train_data, [args.seed, 0, step], args.batch_size)

    def evaluate(model, step):
        record = {}
        for split, sets in (("train", train_eval), ("test", test_eval)):
            record[f"{split}_accuracy"], record[f"{split}_cross_entropy"] = scores(model, *sets)
        return record

    return train_data, test_data, next_batch, evaluate


def run(args: argparse.Namespace) -> Results:
    """Train every pooling of `args`; write the results and the figure."""
    train_data, test_data, next_batch, evaluate = task_data(args)
    config = {k: (str(v) if v is not None else None) for k, v in vars(args).items()}
    config.update(train_images=len(train_data.labels), test_images=len(test_data.labels))
    results = Results("counting", config, args.out, ABOUT)
    histories = {}
    for name in args.models:
        model = model_from_args(args, name, train_data, training.backend_from_args(args))
        params = training.count_parameters(model)
        config = training.run_config(args, name)
        print(f"\n{LABELS[name]} ({params} parameters)")
        start = time.perf_counter()
        model, history = training.train(
            model, make_loss(args.aux_weight), next_batch, config, evaluate
        )
        histories[name] = history
        final = history["eval"][-1]
        results.add(
            model=name,
            params=params,
            steps=args.steps,
            train_accuracy=final["train_accuracy"],
            test_accuracy=final["test_accuracy"],
            best_test_accuracy=max(e["test_accuracy"] for e in history["eval"]),
            train_seconds=time.perf_counter() - start,
        )
    _plot(results, histories, args.data)
    results.write(
        [
            "model",
            "params",
            "steps",
            "train_accuracy",
            "test_accuracy",
            "best_test_accuracy",
            "train_seconds",
        ]
    )
    return results


def _plot(results: Results, histories, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, history) in enumerate(histories.items()):
        steps = [e["step"] for e in history["eval"]]
        color = f"C{i}"
        ax.plot(
            steps,
            [e["test_accuracy"] for e in history["eval"]],
            "-",
            c=color,
            label=f"{LABELS[name]} (test)",
        )
        ax.plot(
            steps,
            [e["train_accuracy"] for e in history["eval"]],
            "--",
            c=color,
            label=f"{LABELS[name]} (train)",
        )
    ax.set(xlabel="training step", ylabel="accuracy", title=f"Class counting ({data})")
    ax.legend(fontsize=8)
    results.save_figure(
        fig, "counting_accuracy", "Train (dashed) and test (solid) accuracy of the count."
    )
    plt.close(fig)


if __name__ == "__main__":
    main()
