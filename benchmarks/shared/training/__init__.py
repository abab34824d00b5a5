"""The training loop shared by the paper's tasks (`benchmarks.tasks.median`,
`benchmarks.tasks.counting`, `benchmarks.tasks.molecules`) and the time-to-accuracy suite.

API:

- `TrainConfig` — steps, learning rate and its schedule (`LR_SCHEDULES`), auxiliary-loss
  weight, evaluation/checkpoint cadence, seed, log path, checkpoint directory, resume, quiet.
- `train(model, loss_fn, next_batch, config, evaluate=None) -> (model, history)`, where
  `loss_fn(model, batch, key) -> (loss, metrics)` (a scalar and a dict of scalars),
  `next_batch(step) -> batch` (a pytree of arrays whose leading axis is the batch; make it a
  pure function of `step` so `--resume` and `--seed` reproduce a run) and
  `evaluate(model, step) -> dict` (host-side, called at step 0, every `eval_every` steps and
  at the end).
  `history` is `{"train": [record, ...], "eval": [record, ...]}`, the records also written
  as JSON lines to `log_path`.
- `add_training_flags(parser, **defaults)` / `config_from_args(args, **overrides)` — the
  `--steps --lr --lr-schedule --aux-weight --eval-every --seed --log --checkpoint-dir
  --resume --quiet` flags; `run_config(args, name)` — the config of one of several models a
  task trains (its own log and checkpoint subfolder).
- `add_backend_flags(parser, ...)` / `backend_from_args(args, layer=0)` — the EA backend per
  layer: `--backend unrolled|implicit|truncated` (one value, or one per layer),
  `--inner-steps` (likewise), `--truncate-k`, `--inner-lr`.
- `count_parameters(model)` — the number of array elements, as the result tables report it.
- `save_checkpoint(dir, state, step, history)` / `load_checkpoint(dir, like)` — the
  checkpoint format (`eqx.tree_serialise_leaves` + a JSON step/history file).
- `data_parallel_mesh()` and `shard_batch(batch, mesh)` — with more than one device, in this
  process or in all processes of a multi-process run, the batch is split across them along its
  leading axis (`jax.sharding.NamedSharding` over a 1-D mesh named `"batch"`, the leading
  axis a multiple of the number of devices), parameters replicated; `train` does this by
  itself.
- `initialize_from_environment()` — joins a multi-process run (`jax.distributed.initialize`)
  when the environment describes one; `python -m benchmarks` calls it first.

Several GPU hosts: run one process per host, the same command on each, with process 0's
host and a free port, the number of processes and this one's id (0, 1, ...):

```bash
# on host0; on the other host the same with EQX_AGG_PROCESS_ID=1
export JAX_COORDINATOR_ADDRESS=host0:1234 EQX_AGG_NUM_PROCESSES=2 EQX_AGG_PROCESS_ID=0
python -m benchmarks median ...
```

Under SLURM (`srun`) or Open MPI (`mpirun`), launch one task per GPU and set none of these:
JAX reads the job's environment and gives each task the GPU of its local rank. `next_batch`
returns the global batch on every process, each process places its own devices' rows, and
the logged loss is the global one. Only process 0 writes the log and checkpoints; `--resume`
needs `--checkpoint-dir` on a filesystem every host sees.

Example:

```python
import argparse, jax, jax.numpy as jnp, equinox as eqx
from benchmarks.shared import training

parser = argparse.ArgumentParser()
training.add_training_flags(parser, steps=100, lr=1e-3)
config = training.config_from_args(parser.parse_args([]))
model = eqx.nn.MLP(1, 1, 32, 2, key=jax.random.PRNGKey(0))

def next_batch(step):
    x = jax.random.normal(jax.random.PRNGKey(step), (32, 1))
    return x, x**2

def loss_fn(model, batch, key):
    x, y = batch
    loss = jnp.mean((jax.vmap(model)(x) - y) ** 2)
    return loss, {"mse": loss}

model, history = training.train(model, loss_fn, next_batch, config)
```
"""

from ._backend_flags import add_backend_flags as add_backend_flags
from ._backend_flags import backend_from_args as backend_from_args
from ._config import LR_SCHEDULES as LR_SCHEDULES
from ._config import TrainConfig as TrainConfig
from ._config import add_training_flags as add_training_flags
from ._config import config_from_args as config_from_args
from ._config import run_config as run_config
from ._distributed import initialize_from_environment as initialize_from_environment
from ._loop import count_parameters as count_parameters
from ._loop import load_checkpoint as load_checkpoint
from ._loop import save_checkpoint as save_checkpoint
from ._loop import train as train
from ._sharding import data_parallel_mesh as data_parallel_mesh
from ._sharding import shard_batch as shard_batch
