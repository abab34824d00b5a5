"""Training across processes: two processes on loopback, one CPU device each, train as one
process does on the whole batch, and only process 0 writes the log and checkpoint."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

from benchmarks.shared import training

from ._distributed_worker import STEPS, config, problem
from .helpers import tree_allclose

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_distributed_worker.py"
TIMEOUT = 120  # seconds for the whole launch; a process that cannot reach the other stops


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path: Path, processes: int) -> list[subprocess.Popen]:
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{free_port()}",
        EQX_AGG_NUM_PROCESSES=str(processes),
    )
    launched = []
    for index in range(processes):
        folder = tmp_path / f"process{index}"
        folder.mkdir()
        launched.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(folder / "result.npz")],
                cwd=folder,
                env={**env, "EQX_AGG_PROCESS_ID": str(index)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return launched


def wait(launched: list[subprocess.Popen]) -> None:
    """Wait for every process, at most `TIMEOUT` seconds in all; kill them after."""
    deadline = time.monotonic() + TIMEOUT
    try:
        outputs = [p.communicate(timeout=max(deadline - time.monotonic(), 1))[0] for p in launched]
    finally:
        for process in launched:
            process.kill()
    for index, (process, output) in enumerate(zip(launched, outputs, strict=True)):
        assert process.returncode == 0, f"process {index}:\n{output[-3000:]}"


def test_two_processes_train_as_one_on_the_whole_batch(tmp_path):
    wait(launch(tmp_path, processes=2))

    model, loss_fn, next_batch, evaluate = problem()
    expected, history = training.train(model, loss_fn, next_batch, config(), evaluate)
    expected_leaves = arrays(expected)
    for index in range(2):
        result = np.load(tmp_path / f"process{index}" / "result.npz")
        leaves = [result[f"arr_{i}"] for i in range(len(expected_leaves))]
        assert tree_allclose(leaves, expected_leaves, rtol=1e-10, atol=1e-12)
        losses, evaluations = result["losses"], result["evaluations"]
        assert tree_allclose(list(losses), [r["loss"] for r in history["train"]], rtol=1e-10)
        assert tree_allclose(list(evaluations), [r["mse"] for r in history["eval"]], rtol=1e-10)

    run = tmp_path / "process0" / "run"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in log] == [
        ("eval", 0), ("train", 1), ("train", 2), ("eval", 2), ("train", 3), ("eval", 3)
    ]  # fmt: skip
    template = (model, optax.adam(1e-2).init(eqx.filter(model, eqx.is_inexact_array)))
    (saved, _), step, _ = training.load_checkpoint(run / "checkpoint", template)
    assert step == STEPS and tree_allclose(arrays(saved), expected_leaves, rtol=1e-10, atol=1e-12)
    assert not (tmp_path / "process1" / "run").exists()  # process 1 wrote nothing


def arrays(model) -> list:
    return jax.tree.leaves(eqx.filter(model, eqx.is_array))


def test_only_an_environment_that_asks_for_several_processes_starts_one(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "EQX_AGG_NUM_PROCESSES", "EQX_AGG_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    slurm_one_task = dict(
        SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node1", SLURM_NTASKS="1", SLURM_PROCID="0",
        SLURM_LOCALID="0",
    )  # fmt: skip
    for name, value in slurm_one_task.items():
        monkeypatch.setenv(name, value)
    assert not training.initialize_from_environment()  # one SLURM task: no distributed run
    monkeypatch.setenv("EQX_AGG_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS, EQX_AGG_PROCESS_ID too"):
        training.initialize_from_environment()
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    monkeypatch.setenv("EQX_AGG_PROCESS_ID", "first")
    with pytest.raises(ValueError, match="EQX_AGG_PROCESS_ID must be an integer, got 'first'"):
        training.initialize_from_environment()
