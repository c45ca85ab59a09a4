"""The device mesh: batches sharded over ``data``, state replicated."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def make_data_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``data`` over the first ``num_devices`` devices (default: all).

    The axis is ``Auto``: the compiler propagates the batch sharding through the
    step (``Explicit`` axes would make every inner computation, such as a learned
    mask's optimisation, spell out its sharding).
    """
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices but only {jax.device_count()} are visible")
    return jax.make_mesh((n,), ("data",), devices=jax.devices()[:n], axis_types=(jax.sharding.AxisType.Auto,))


def shard_batch(tree, mesh, batch_axis: int = 1):
    """Puts host arrays on the mesh, split along ``batch_axis`` (axis 0 is the run axis).

    Raises:
      ValueError: the batch size is not divisible by the mesh size.
    """
    n = mesh.shape["data"]

    def put(x):
        x = x if isinstance(x, jax.Array) else np.asarray(x)
        if x.shape[batch_axis] % n:
            raise ValueError(f"batch of {x.shape[batch_axis]} examples cannot be split over {n} devices; "
                             f"use a batch size divisible by {n}")
        spec = P(*([None] * batch_axis + ["data"]))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(put, tree)


def replicate(tree, mesh):
    """Puts every leaf on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
