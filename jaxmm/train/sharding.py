"""The device mesh: batches sharded over ``data``, state replicated."""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmm.data.placement import shard_batch  # noqa: F401  (re-exported: placement belongs to the data layer)


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


def replicate(tree, mesh):
    """Puts every leaf on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
