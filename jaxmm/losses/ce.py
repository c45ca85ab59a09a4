"""Per-example cross-entropy losses (optax style: no reduction, optional ``where``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *, where=None) -> jax.Array:
    """Cross-entropy of integer labels under ``softmax(logits)``.

    Args:
      logits: ``[..., K]`` unnormalised scores.
      labels: ``[...]`` integer class ids in ``[0, K)``.
      where: optional ``[...]`` boolean; excluded examples get loss 0.

    Returns:
      ``[...]`` per-example loss ``-log softmax(logits)[label]``.
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return loss if where is None else jnp.where(where, loss, 0.0)


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array, *, where=None) -> jax.Array:
    """Binary cross-entropy of ``{0,1}`` labels under ``sigmoid(logits)``.

    Args:
      logits: ``[...]`` or ``[..., 1]`` scores (a trailing singleton axis is dropped).
      labels: ``[...]`` targets in ``[0, 1]``.
      where: optional ``[...]`` boolean mask.

    Returns:
      ``[...]`` per-example ``-y log σ(f) - (1-y) log(1-σ(f))``, computed stably.
    """
    logits = _squeeze_binary(logits, labels)
    labels = labels.astype(logits.dtype)
    loss = jax.nn.softplus(logits) - labels * logits
    return loss if where is None else jnp.where(where, loss, 0.0)


def classification_loss(logits: jax.Array, labels: jax.Array, *, where=None) -> jax.Array:
    """Sigmoid CE for single-logit (binary) heads, softmax CE otherwise."""
    if logits.shape[-1] == 1:
        return sigmoid_cross_entropy(logits, labels, where=where)
    return softmax_cross_entropy(logits, labels, where=where)


def _squeeze_binary(logits: jax.Array, labels: jax.Array) -> jax.Array:
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        return logits[..., 0]
    if logits.shape != labels.shape:
        raise ValueError(
            f"binary logits of shape {logits.shape} do not match labels {labels.shape}; "
            "pass [B] or [B, 1] logits for [B] labels."
        )
    return logits
