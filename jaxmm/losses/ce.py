"""Per-example cross-entropy losses (optax style: no reduction, optional ``where``).

The losses themselves are :mod:`optax.losses`; this module adds the per-example
``where`` mask, the single-logit (binary) head convention and the categorical
reading of logits that scores and losses share (:func:`as_categorical`,
:func:`true_class_probability`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def as_categorical(logits: jax.Array) -> jax.Array:
    """``[..., K]`` logits as a categorical over ``max(K, 2)`` classes.

    A single binary logit ``f`` (``K = 1``) becomes ``[0, f]``, whose softmax is
    ``(1 − σ(f), σ(f))``, so softmax-based losses and scores also apply to binary
    heads. Logits with ``K >= 2`` are returned unchanged.
    """
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits


def true_class_probability(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax probability of the true class for every example.

    Args:
      logits: ``[B, K]`` logits; a single logit ``[B, 1]`` is a binary head read
        as ``sigmoid`` (see :func:`as_categorical`).
      labels: ``[B]`` integer class ids.

    Returns:
      ``[B]`` float32 probabilities, gradient stopped (scores are observations,
      not loss terms).
    """
    logits = as_categorical(jax.lax.stop_gradient(logits).astype(jnp.float32))
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.exp(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0])


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *, where=None) -> jax.Array:
    """Cross-entropy of integer labels under ``softmax(logits)``.

    :func:`optax.losses.softmax_cross_entropy_with_integer_labels` with a
    per-example mask.

    Args:
      logits: ``[..., K]`` unnormalised scores.
      labels: ``[...]`` integer class ids in ``[0, K)``.
      where: optional ``[...]`` boolean; excluded examples get loss 0.

    Returns:
      ``[...]`` per-example loss ``-log softmax(logits)[label]``.
    """
    loss = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))
    return loss if where is None else jnp.where(where, loss, 0.0)


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array, *, where=None) -> jax.Array:
    """Binary cross-entropy of ``{0,1}`` labels under ``sigmoid(logits)``.

    :func:`optax.losses.sigmoid_binary_cross_entropy` with a per-example mask
    and a check of the binary head's shape.

    Args:
      logits: ``[...]`` or ``[..., 1]`` scores (a trailing singleton axis is dropped).
      labels: ``[...]`` targets in ``[0, 1]``.
      where: optional ``[...]`` boolean mask.

    Returns:
      ``[...]`` per-example ``-y log σ(f) - (1-y) log(1-σ(f))``, computed stably.
    """
    logits = _squeeze_binary(logits, labels)
    loss = optax.losses.sigmoid_binary_cross_entropy(logits, labels)
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
