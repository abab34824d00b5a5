"""Inner-loop convergence: max|∇_y E| and the energy at every inner step (paper Fig. 5).

For the untrained potential and for the potential after --steps Adam steps on the median
task (Unrolled with --inner-steps steps), trained without and with the auxiliary loss of
eq. 5 (--aux-weight), the inner loop is run for --eval-inner-steps steps (gtol 0) on a
held-out batch and its per-step statistics are recorded.

examples:
  python -m benchmarks convergence
  python -m benchmarks convergence --steps 500 --aux-weight 0.1
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import solvers

from ..shared import cli
from ..shared.data.median import median_sets
from ..shared.results import Results, progress
from . import problem

ABOUT = (
    "The inner loop's residual max|∇_y E| (mean and worst over held-out sets) and energy at "
    "every inner step, for the median model untrained, after Adam training, and after "
    "training with the auxiliary loss of eq. 5. `grad_max_norm_at_T` is the mean residual at "
    "the T used in training."
)


def train(model, data, labels, steps: int, batch: int, aux_weight: float, lr: float, quiet: bool):
    """`steps` Adam steps on the median loss (+ `aux_weight` × eq. 5), cycling through
    `data` in batches of `batch`; returns the trained model."""
    optimizer = optax.adam(lr)
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    weight = jnp.asarray(aux_weight, data.dtype)

    @eqx.filter_jit
    def step(model, state, x, y):
        grads = eqx.filter_grad(problem.loss)(model, x, y, weight)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state

    num_batches = data.shape[0] // batch
    desc = f"train aux={aux_weight:g}"
    for i in progress(range(steps), desc, quiet=quiet):
        j = (i % num_batches) * batch
        model, state = step(model, state, data[j : j + batch], labels[j : j + batch])
    return model


@eqx.filter_jit
def _evaluate(model, x, labels):
    prediction, _ = jax.vmap(model)(x)
    return jnp.mean((prediction[:, 0] - labels) ** 2), problem.solve_stats(model, x)


def inner_statistics(model, x, labels, steps: int, eval_steps: int) -> dict[str, Any]:
    """Per-step `max|∇_y E|` (mean, max over sets) and mean energy over `eval_steps`
    steps with gtol 0, plus the task MSE with a `steps`-step Unrolled solver."""
    method = model.pool.solver.method
    lr, momentum = float(method.lr), float(method.momentum)
    long = solvers.Unrolled(eval_steps, lr, momentum, gtol=0.0, throw=False)
    _, stats = _evaluate(problem.with_solver(model, problem.cast(long, x.dtype)), x, labels)
    mse, short = _evaluate(model, x, labels)
    history = np.asarray(stats.grad_max_norm_history)
    return {
        "mse": float(mse),
        "aux_loss": float(jnp.mean(short.aux_loss)),
        "grad_max_norm_at_T": float(jnp.mean(short.grad_max_norm)),
        "grad_max_norm_mean": history.mean(axis=0).tolist(),
        "grad_max_norm_max": history.max(axis=0).tolist(),
        "energy_mean": np.asarray(stats.energy_history).mean(axis=0).tolist(),
        "lr": lr,
        "momentum": momentum,
    }


def _parser():
    parser = cli.parser("convergence", __doc__)
    problem.add_problem_flags(parser)
    group = parser.add_argument_group("convergence")
    group.add_argument(
        "--inner-steps", type=cli.positive_int, default=10, help="inner steps T in training"
    )
    group.add_argument(
        "--eval-inner-steps", type=cli.positive_int, default=50, help="inner steps recorded"
    )
    group.add_argument("--steps", type=cli.positive_int, default=200, help="Adam steps")
    group.add_argument(
        "--train-sets", type=cli.positive_int, default=512, help="training sets (cycled)"
    )
    group.add_argument("--lr", type=cli.positive_float, default=1e-3, help="Adam learning rate")
    group.add_argument(
        "--aux-weight", type=cli.non_negative_float, default=1.0, help="weight of eq. 5"
    )
    return parser


QUICK = dict(inner_steps=3, eval_inner_steps=6, steps=3, train_sets=4)


def main(argv: list[str] | None = None) -> Results:
    """Run the suite; write `results/convergence/`; return the `Results`."""
    args = problem.apply_quick(_parser(), argv, **QUICK)
    solver = solvers.Unrolled(args.inner_steps, throw=False)
    model, x, labels = problem.problem_from_args(args, solver)
    data, data_labels = problem.cast(
        median_sets(jax.random.PRNGKey(args.seed + 1), args.train_sets, args.set_size), x.dtype
    )
    results = Results("convergence", problem.config_of(args), args.out, ABOUT)
    histories = {}
    conditions = [("untrained", 0, 0.0), ("trained", args.steps, 0.0),
                  ("trained + aux loss", args.steps, args.aux_weight)]  # fmt: skip
    for condition, train_steps, weight in conditions:
        trained = model
        if train_steps:
            trained = train(
                model, data, data_labels, train_steps, args.batch, weight, args.lr, args.quiet
            )
        stats = inner_statistics(trained, x, labels, args.inner_steps, args.eval_inner_steps)
        histories[condition] = {
            name: stats.pop(name)
            for name in ("grad_max_norm_mean", "grad_max_norm_max", "energy_mean")  # fmt: skip
        }
        results.add(
            condition=condition,
            train_steps=train_steps,
            aux_weight=weight,
            **stats,
            grad_max_norm_final=histories[condition]["grad_max_norm_mean"][-1],
        )
    _report(results, histories, args)
    results.write(
        [
            "condition",
            "train_steps",
            "aux_weight",
            "mse",
            "aux_loss",
            "grad_max_norm_at_T",
            "grad_max_norm_final",
            "lr",
            "momentum",
        ],  # fmt: skip
        extra={"histories": histories},
    )
    return results


def _report(results: Results, histories, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_grad, ax_energy) = plt.subplots(1, 2, figsize=(11, 4))
    for condition, history in histories.items():
        steps = np.arange(1, len(history["grad_max_norm_mean"]) + 1)
        (line,) = ax_grad.semilogy(steps, history["grad_max_norm_mean"], label=condition)
        ax_grad.semilogy(steps, history["grad_max_norm_max"], ":", color=line.get_color())
        ax_energy.plot(steps, history["energy_mean"], label=condition)
    for ax in (ax_grad, ax_energy):
        ax.axvline(args.inner_steps, color="gray", linewidth=0.5)
        ax.set_xlabel("inner step")
    ax_grad.set_ylabel("max |∇_y E| (solid: mean over sets, dotted: worst)")
    ax_energy.set_ylabel("energy (mean over sets)")
    ax_grad.legend()
    results.save_figure(
        fig,
        "convergence",
        f"Inner-loop statistics per step on held-out sets; the grey line marks the T = "
        f"{args.inner_steps} used in training.",
    )
    plt.close(fig)


if __name__ == "__main__":
    main()
