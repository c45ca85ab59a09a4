"""The device mesh: batches sharded over ``data``, state replicated; device values back on the host."""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmm.data.placement import process_rows, shard_batch  # noqa: F401  (re-exported: placement is the data layer's)


def make_data_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``data`` over the first ``num_devices`` devices (default: all).

    With several processes it spans every process's devices, each process's as one contiguous
    block (so that a process feeds consecutive rows of a batch, :func:`process_rows`).

    The axis is ``Auto``: the compiler propagates the batch sharding through the
    step (``Explicit`` axes would make every inner computation, such as a learned
    mask's optimisation, spell out its sharding).

    Raises:
      ValueError: more devices than visible, or fewer than all with several processes.
    """
    n = num_devices or jax.device_count()
    if n > jax.device_count():
        raise ValueError(f"asked for {n} devices but only {jax.device_count()} are visible")
    if jax.process_count() > 1 and n != jax.device_count():
        raise ValueError(f"asked for {n} of the {jax.device_count()} devices of {jax.process_count()} processes; "
                         "with several processes the mesh spans all of them (leave num_devices unset)")
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))[:n]
    return jax.sharding.Mesh(np.asarray(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicate(tree, mesh):
    """Puts every leaf on every device of the mesh (with several processes, each puts its own devices' copies)."""
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):  # device_put refuses typed PRNG keys (nnx's streams) on devices of other processes
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jax.device_put(jax.random.key_data(x), sharding),
                                            impl=jax.random.key_impl(x))
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree)


def to_host(tree):
    """Every leaf as a numpy array holding its whole (global) value, also when other processes hold parts of it.

    With several processes every process must call it, in the same order (it may gather).
    """
    def host(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(host, tree)
