"""Data parallelism: the batch split across devices, the parameters replicated."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def data_parallel_mesh() -> Mesh | None:
    """A 1-D mesh over every visible device (axis `"batch"`), or None with one device."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return Mesh(np.asarray(devices), (AXIS,))


def shard_batch(batch, mesh: Mesh):
    """Place every array of `batch` with its leading axis split across `mesh`."""
    size = mesh.devices.size
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))

    def place(leaf):
        if leaf.ndim == 0 or leaf.shape[0] % size:
            raise ValueError(
                f"data parallelism over {size} devices needs every batch array's leading axis "
                f"to be a multiple of {size}, got shape {leaf.shape}"
            )
        return jax.device_put(leaf, sharding)

    return jax.tree_util.tree_map(place, batch)


def replicate(tree, mesh: Mesh):
    """Place every array of `tree` in full on every device of `mesh`."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda leaf: jax.device_put(leaf, sharding) if isinstance(leaf, jax.Array) else leaf, tree
    )
