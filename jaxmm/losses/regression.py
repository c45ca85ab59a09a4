"""Per-example regression losses (optax style: no reduction over the batch, optional ``where``).

Both take predictions ``[B]`` or ``[B, D]`` and targets ``[B]`` or ``[B, D]`` (a trailing
singleton axis on either side is matched to the other) and return ``[B]``: the error
averaged over the ``D`` outputs, so the batch mean equals PyTorch's ``L1Loss()`` /
``MSELoss()`` with ``reduction="mean"``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def l1_loss(pred: jax.Array, target: jax.Array, *, where=None) -> jax.Array:
    """Absolute error ``mean_d |pred - target|`` per example (the MOSI/MOSEI training loss, BTW/MMIM).

    Args:
      pred: ``[B]`` or ``[B, D]`` predictions.
      target: ``[B]`` or ``[B, D]`` targets.
      where: optional ``[B]`` boolean; excluded examples get loss 0.

    Returns:
      ``[B]`` per-example loss.

    Raises:
      ValueError: shapes that do not match as above.
    """
    pred, target = _align(pred, target, "l1_loss")
    return _reduce(jnp.abs(pred - target), where)


def mse_loss(pred: jax.Array, target: jax.Array, *, where=None) -> jax.Array:
    """Squared error ``mean_d (pred - target)²`` per example (``optax.losses.squared_error``; no ½ factor).

    Args:
      pred: ``[B]`` or ``[B, D]`` predictions.
      target: ``[B]`` or ``[B, D]`` targets.
      where: optional ``[B]`` boolean; excluded examples get loss 0.

    Returns:
      ``[B]`` per-example loss.

    Raises:
      ValueError: shapes that do not match as above.
    """
    pred, target = _align(pred, target, "mse_loss")
    return _reduce(optax.losses.squared_error(pred, target), where)


def _align(pred: jax.Array, target: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
    """Both as ``[B, D]`` in ``pred``'s (floating) dtype."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    p = pred[:, None] if pred.ndim == 1 else pred
    t = target[:, None] if target.ndim == 1 else target
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"{fn}: pred {pred.shape} and target {target.shape} do not match; "
                         "pass [B] or [B, D] arrays of the same shape ([B, 1] and [B] are interchangeable)")
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.float32)
    return p, t.astype(p.dtype)


def _reduce(err: jax.Array, where) -> jax.Array:
    loss = jnp.mean(err, axis=-1)
    return loss if where is None else jnp.where(where, loss, 0.0)
