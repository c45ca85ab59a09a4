"""Per-modality scores that balancing methods read from unimodal logits.

OGM-GE and InfoReg use the batch *sum* of the true-class softmax probability of
each modality's logits (the "discrepancy score"); RedReg uses its batch *mean*
(the "confidence"). Both are reductions of :func:`true_class_probability`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def true_class_probability(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax probability of the true class for every example.

    Args:
      logits: ``[B, K]`` logits of one modality (or of the fused head); a single
        logit ``[B, 1]`` is a binary head read as ``sigmoid`` (logits ``[0, z]``).
      labels: ``[B]`` integer class ids.

    Returns:
      ``[B]`` float32 probabilities, gradient stopped (scores are observations,
      not loss terms).
    """
    logits = jax.lax.stop_gradient(logits).astype(jnp.float32)
    if logits.shape[-1] == 1:
        logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.exp(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0])


def discrepancy_score(logits: jax.Array, labels: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """OGM-GE / InfoReg score ``s_m = Σ_i softmax(logits_i)[y_i]`` (a batch sum).

    Args:
      logits: ``[B, K]`` logits.
      labels: ``[B]`` integer class ids.
      valid: optional ``[B]`` 0/1 weights; padded examples (0) are left out of the sum.
    """
    p = true_class_probability(logits, labels)
    return jnp.sum(p if valid is None else p * valid.astype(p.dtype))


def confidence(logits: jax.Array, labels: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """RedReg confidence ``p_m = (1/B) Σ_i softmax(logits_i)[y_i]`` (a batch mean).

    Args:
      logits: ``[B, K]`` logits.
      labels: ``[B]`` integer class ids.
      valid: optional ``[B]`` 0/1 weights; padded examples (0) are left out of the mean.
    """
    return jnp.average(true_class_probability(logits, labels), weights=valid)
