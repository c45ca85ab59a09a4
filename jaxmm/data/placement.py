"""Placing host batches on the device mesh (the last step of the input pipeline).

Lives in the data layer so that :mod:`jaxmm.data.prefetch` needs nothing from the
trainer; :mod:`jaxmm.train.sharding` re-exports :func:`shard_batch`.

With several processes (``jax.distributed``) the mesh spans every process's devices and
each process puts on its devices only its own rows of a global batch
(:func:`process_rows`): either cut from the whole batch every process holds
(``local=False``) or gathered by this process alone (``local=True``).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def _check_divisible(size: int, n: int) -> None:
    if size % n:
        raise ValueError(f"batch of {size} examples cannot be split over {n} devices; "
                         f"use a batch size divisible by {n}")


def process_rows(size: int, mesh) -> slice:
    """The rows of a global batch of ``size`` that this process's devices hold (all of them in one process).

    Raises:
      ValueError: ``size`` is not divisible by the mesh size, or this process's devices are not one
        contiguous block of the mesh (:func:`~jaxmm.train.sharding.make_data_mesh` makes them so).
    """
    n = mesh.shape["data"]
    _check_divisible(size, n)
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if not mine or mine != list(range(mine[0], mine[0] + len(mine))):
        raise ValueError(f"process {jax.process_index()} holds mesh positions {mine}, not one contiguous block; "
                         "build the mesh with jaxmm.train.sharding.make_data_mesh")
    per_device = size // n
    return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def shard_batch(tree, mesh, batch_axis: int = 1, *, local: bool = False):
    """Puts host arrays on the mesh, split along ``batch_axis`` (axis 0 is the run axis).

    Args:
      tree: a pytree of arrays (e.g. a :class:`~jaxmm.data.types.Batch`); device arrays stay as they are.
      mesh: a mesh with a ``data`` axis.
      batch_axis: the axis split over ``data``.
      local: the host arrays hold only this process's rows (:func:`process_rows`) of the global
        batch; otherwise they hold the whole batch (each process transfers its own rows).
        The same with one process.

    Raises:
      ValueError: the batch size is not divisible by the mesh size.
    """
    n = mesh.shape["data"]
    spec = NamedSharding(mesh, P(*([None] * batch_axis + ["data"])))
    if jax.process_count() == 1 or all(isinstance(x, jax.Array) for x in jax.tree.leaves(tree)):
        for x in jax.tree.leaves(tree):
            _check_divisible(np.shape(x)[batch_axis], n)
        return jax.device_put(tree, spec)  # one call for the whole tree

    def put(x):
        if isinstance(x, jax.Array):
            _check_divisible(x.shape[batch_axis], n)
            return jax.device_put(x, spec)
        x = np.asarray(x)
        if local:
            size = x.shape[batch_axis] * n // len(mesh.local_devices)
        else:
            size = x.shape[batch_axis]
            x = x[(slice(None),) * batch_axis + (process_rows(size, mesh),)]
        _check_divisible(size, n)
        shape = x.shape[:batch_axis] + (size,) + x.shape[batch_axis + 1:]
        return jax.make_array_from_process_local_data(spec, x, shape)

    return jax.tree.map(put, tree)
