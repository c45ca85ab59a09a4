"""Placing host batches on the device mesh (the last step of the input pipeline).

Lives in the data layer so that :mod:`jaxmm.data.prefetch` needs nothing from the
trainer; :mod:`jaxmm.train.sharding` re-exports :func:`shard_batch`.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def shard_batch(tree, mesh, batch_axis: int = 1):
    """Puts host arrays on the mesh, split along ``batch_axis`` (axis 0 is the run axis).

    Args:
      tree: a pytree of arrays (e.g. a :class:`~jaxmm.data.types.Batch`).
      mesh: a mesh with a ``data`` axis.
      batch_axis: the axis split over ``data``.

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
