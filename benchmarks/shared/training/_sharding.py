"""Data parallelism: the batch split across every device of every process, the parameters
replicated."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def data_parallel_mesh() -> Mesh | None:
    """A 1-D mesh (axis `"batch"`) over every device of every process (`jax.devices()`), or
    None with one device in all."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return Mesh(np.asarray(devices), (AXIS,))


def shard_batch(batch, mesh: Mesh):
    """The arrays of the global `batch`, each `[batch, ...]`, placed with the leading axis split
    across `mesh`.

    Every process passes the same global batch; in a multi-process run each one places the
    rows of its own devices only (`jax.make_array_from_callback`).
    """
    size = mesh.devices.size
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))

    def place(leaf):
        if not isinstance(leaf, jax.Array):
            leaf = np.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] % size:
            raise ValueError(
                f"data parallelism over {size} devices needs every batch array's leading axis "
                f"to be a multiple of {size}, got shape {leaf.shape}"
            )
        if sharding.is_fully_addressable:  # one process: move the array as it is
            return jax.device_put(leaf, sharding)
        rows = np.asarray(leaf)
        return jax.make_array_from_callback(rows.shape, sharding, lambda index: rows[index])

    return jax.tree_util.tree_map(place, batch)


def replicate(tree, mesh: Mesh):
    """Place every array of `tree` in full on every device of `mesh` (in a multi-process run
    JAX checks that every process passes the same values)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda leaf: jax.device_put(leaf, sharding) if isinstance(leaf, jax.Array) else leaf, tree
    )
