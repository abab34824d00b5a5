"""Joining the processes of a multi-host run (`jax.distributed.initialize`) when the
environment describes one."""

import os

import jax

COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # jax.distributed.initialize reads it by itself
NUM_PROCESSES = "EQX_AGG_NUM_PROCESSES"
PROCESS_ID = "EQX_AGG_PROCESS_ID"

# Launchers whose environment jax.distributed.initialize() reads by itself (jax/_src/clusters):
# the variables JAX looks for, and the one that holds the number of processes.
LAUNCHERS = (
    (  # SLURM's srun
        ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"),
        "SLURM_NTASKS",
    ),
    (("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE"),  # Open MPI
)


def initialize_from_environment() -> bool:
    """Call `jax.distributed.initialize` once, when the environment asks for several
    processes; returns whether this process is one of several.

    The environment asks for them with `JAX_COORDINATOR_ADDRESS=host:port` (process 0's host
    and a free port), `EQX_AGG_NUM_PROCESSES` and `EQX_AGG_PROCESS_ID` (0, 1, ...), or through
    a launcher JAX reads by itself: SLURM's `srun` or Open MPI's `mpirun` with more than one
    task (JAX then fills in what those variables leave unset, and gives each task the one GPU
    numbered by its local rank).

    Call it first thing in the program, before any JAX computation: `python -m benchmarks`
    does; `train` calls it too, where JAX raises if the computation has already begun. Later
    calls return at once.
    """
    if jax.distributed.is_initialized():
        return True
    given = {name: os.environ.get(name) for name in (COORDINATOR, NUM_PROCESSES, PROCESS_ID)}
    missing = [name for name, value in given.items() if value is None]
    if not _launched_with_several_tasks():
        if len(missing) == len(given):
            return False
        if missing:
            raise ValueError(f"a multi-process run needs {', '.join(missing)} too, got {given}")
    jax.distributed.initialize(
        coordinator_address=given[COORDINATOR],
        num_processes=_as_int(NUM_PROCESSES, given[NUM_PROCESSES]),
        process_id=_as_int(PROCESS_ID, given[PROCESS_ID]),
    )
    return True


def _launched_with_several_tasks() -> bool:
    return any(
        all(name in os.environ for name in names) and int(os.environ[count]) > 1
        for names, count in LAUNCHERS
    )


def _as_int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
