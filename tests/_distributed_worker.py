"""One process of `test_distributed_training`: 3 Adam steps of a small MLP in float64 on a
fixed global batch of 8, data-parallel over the processes that `JAX_COORDINATOR_ADDRESS`,
`EQX_AGG_NUM_PROCESSES` and `EQX_AGG_PROCESS_ID` describe (one CPU device each).

`python tests/_distributed_worker.py RESULT.npz` (run from its own working directory: the
training log and checkpoint go to `run/` there) writes this process's trained parameters,
losses and evaluations to `RESULT.npz`.
"""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.shared import training

STEPS = 3


def problem():
    """`(model, loss_fn, next_batch, evaluate)`: an MLP 2 → 8 → 1 fitting `sin(x₀) + x₁²` on a
    global batch of 8 that is a pure function of the step."""

    def next_batch(step):
        x = np.random.default_rng(step).normal(size=(8, 2))
        return x, np.sin(x[:, 0]) + x[:, 1] ** 2

    def loss_fn(model, batch, key):
        x, y = batch
        noise = 1e-3 * jax.random.normal(key, y.shape)  # the per-step key reaches the loss
        mse = jnp.mean((jax.vmap(model)(x)[:, 0] - y - noise) ** 2)
        return mse, {"mse": mse}

    held_out = np.linspace(-1.0, 1.0, 10).reshape(5, 2)

    def evaluate(model, step):
        return {"mse": float(jnp.mean(jax.vmap(model)(held_out) ** 2))}

    model = eqx.nn.MLP(2, 1, 8, 1, key=jax.random.PRNGKey(0))
    return model, loss_fn, next_batch, evaluate


def config(**overrides) -> training.TrainConfig:
    return training.TrainConfig(
        steps=STEPS, lr=1e-2, eval_every=2, log_every=1, quiet=True, **overrides
    )


def main(result_path: str) -> None:
    jax.config.update("jax_enable_x64", True)
    assert training.initialize_from_environment()
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 2, 1)
    model, loss_fn, next_batch, evaluate = problem()
    run = config(log_path="run/log.jsonl", checkpoint_dir="run/checkpoint")
    trained, history = training.train(model, loss_fn, next_batch, run, evaluate)
    leaves = jax.tree.leaves(eqx.filter(trained, eqx.is_array))
    assert all(leaf.is_fully_replicated and len(leaf.sharding.device_set) == 2 for leaf in leaves)
    np.savez(
        result_path,
        *[np.asarray(leaf) for leaf in leaves],
        losses=[record["loss"] for record in history["train"]],
        evaluations=[record["mse"] for record in history["eval"]],
    )


if __name__ == "__main__":
    main(sys.argv[1])
