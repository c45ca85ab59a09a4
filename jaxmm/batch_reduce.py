"""Reductions over a batch's examples that stay global when the train step runs per device.

Under ``train.parallel="shard_map"`` every device runs the step on its own rows of the batch. A
computation that reaches across examples -- a masked mean, a class prototype, a batch covariance, a
shuffle of the batch, a random draw per example -- must then combine every device's rows to give
what one device would. These helpers do so. Outside a per-device step (one device, or the
compiler-partitioned ``auto`` step) they are the plain reductions, so code written with them runs
unchanged everywhere; inside one (the trainer traces its step within :func:`per_device`) they add
the collective over the data axis.

Gradients flow through them as through the global computation: ``jax.shard_map``'s varying-value
typing makes the transpose of a ``psum`` a broadcast and sums the gradients of replicated
parameters, so differentiating a loss built from these reductions gives the global gradient.

A user's own method or loss that reduces over the batch uses these in place of ``jnp.sum`` /
``jnp.mean`` over axis 0; the 8-device equality test (``tests/train/test_shard_map.py``) shows
where that was forgotten.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import jax
import jax.numpy as jnp

_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("jaxmm_batch_axis", default=None)


@contextlib.contextmanager
def per_device(axis_name: str) -> Iterator[None]:
    """Within this block, traced code runs per device over mesh axis ``axis_name`` (inside ``shard_map``)."""
    token = _AXIS.set(axis_name)
    try:
        yield
    finally:
        _AXIS.reset(token)


def axis_name() -> str | None:
    """The data axis of the per-device step being traced, or ``None`` outside one."""
    return _AXIS.get()


def device_count() -> int:
    """Devices that share the batch (1 outside a per-device step)."""
    name = _AXIS.get()
    return 1 if name is None else jax.lax.axis_size(name)


def batch_sum(x: jax.Array, axis: int | tuple[int, ...] = 0) -> jax.Array:
    """``jnp.sum(x, axis)`` over the examples of the whole (global) batch (``axis`` includes the example axis)."""
    s = jnp.sum(x, axis=axis)
    name = _AXIS.get()
    return s if name is None else jax.lax.psum(s, name)


def batch_mean(x: jax.Array, where: jax.Array | None = None, axis: int = 0) -> jax.Array:
    """Mean of ``x`` over the examples of the global batch, counting only rows with ``where`` true.

    ``where`` is a ``[B]`` mask (bool or 0/1) over ``axis``; an all-false batch gives 0, not NaN.
    """
    if where is None:
        return batch_sum(x, axis) / (x.shape[axis] * device_count())
    w = jnp.asarray(where).astype(x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)
    w = jnp.expand_dims(w, tuple(range(1, x.ndim - axis)))
    w = jnp.moveaxis(w, 0, axis) if axis else w
    return batch_sum(x * w, axis) / jnp.maximum(batch_sum(w, axis), 1.0)


def gather_rows(x: jax.Array, axis: int = 0) -> jax.Array:
    """The global batch of ``x`` (every device's rows, in device order) on every device.

    Built as a ``psum`` of each device's rows placed in zeros (exact: every element adds zeros to one
    value), so the result is typed replicated: state computed from it may leave the step.
    """
    name = _AXIS.get()
    if name is None:
        return x
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = n * jax.lax.axis_size(name)
    as_sum = jnp.int32 if x.dtype == jnp.bool_ else x.dtype
    placed = jax.lax.dynamic_update_slice_in_dim(jnp.zeros(shape, as_sum), x.astype(as_sum),
                                                 jax.lax.axis_index(name) * n, axis)
    return jax.lax.psum(placed, name).astype(x.dtype)


def local_rows(x: jax.Array, axis: int = 0) -> jax.Array:
    """This device's rows of a global-batch array ``x`` (the inverse of :func:`gather_rows`)."""
    name = _AXIS.get()
    if name is None:
        return x
    n = x.shape[axis] // jax.lax.axis_size(name)
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(name) * n, n, axis)


def draw_rows(draw: Callable[[jax.Array, tuple[int, ...]], jax.Array], key: jax.Array,
              shape: tuple[int, ...], axis: int = 0) -> jax.Array:
    """``draw(key, shape)`` for this device's rows, equal to the same rows of one draw over the global batch.

    Every device draws the global batch's numbers and keeps its own rows, so a method's random masks,
    noise and permutations do not depend on how many devices share the batch (the draws cost
    ``device_count()`` times more; they are small next to the step).

    Args:
      draw: ``(key, shape) -> array``, e.g. ``lambda k, s: jax.random.normal(k, s)``.
      key: the key, the same on every device.
      shape: the local shape; ``shape[axis]`` is this device's number of rows.
      axis: the example axis.
    """
    full = list(shape)
    full[axis] *= device_count()
    return local_rows(draw(key, tuple(full)), axis)


def is_per_device(x: jax.Array) -> bool:
    """Whether traced ``x`` may differ between devices (it depends on a device's own rows)."""
    name = _AXIS.get()
    if name is None:
        return False
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    varying = manual.varying if manual is not None else getattr(aval, "vma", frozenset())
    return name in varying
