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
      logits: ``[B, K]`` logits of one modality (or of the fused head).
      labels: ``[B]`` integer class ids.

    Returns:
      ``[B]`` float32 probabilities, gradient stopped (scores are observations,
      not loss terms).
    """
    logp = jax.nn.log_softmax(jax.lax.stop_gradient(logits).astype(jnp.float32), axis=-1)
    return jnp.exp(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0])


def discrepancy_score(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """OGM-GE / InfoReg score ``s_m = Σ_i softmax(logits_i)[y_i]`` (a batch sum)."""
    return jnp.sum(true_class_probability(logits, labels))


def confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """RedReg confidence ``p_m = (1/B) Σ_i softmax(logits_i)[y_i]`` (a batch mean)."""
    return jnp.mean(true_class_probability(logits, labels))
