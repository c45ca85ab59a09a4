"""Per-modality scores that balancing methods read from unimodal logits.

OGM-GE and InfoReg use the batch *sum* of the true-class softmax probability of
each modality's logits (the "discrepancy score"); RedReg uses its batch *mean*
(the "confidence"). Both are reductions of
:func:`jaxmm.losses.ce.true_class_probability` (re-exported here) over the global batch
(:mod:`jaxmm.batch_reduce`: every device's rows inside a per-device train step).
"""
from __future__ import annotations

import jax

from jaxmm.batch_reduce import batch_mean, batch_sum
from jaxmm.losses.ce import true_class_probability

__all__ = ["confidence", "discrepancy_score", "true_class_probability"]


def discrepancy_score(logits: jax.Array, labels: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """OGM-GE / InfoReg score ``s_m = Σ_i softmax(logits_i)[y_i]`` (a sum over the global batch).

    Args:
      logits: ``[B, K]`` logits.
      labels: ``[B]`` integer class ids.
      valid: optional ``[B]`` 0/1 weights; padded examples (0) are left out of the sum.
    """
    p = true_class_probability(logits, labels)
    return batch_sum(p if valid is None else p * valid.astype(p.dtype))


def confidence(logits: jax.Array, labels: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """RedReg confidence ``p_m = (1/B) Σ_i softmax(logits_i)[y_i]`` (a mean over the global batch).

    Args:
      logits: ``[B, K]`` logits.
      labels: ``[B]`` integer class ids.
      valid: optional ``[B]`` 0/1 weights; padded examples (0) are left out of the mean (an
        all-padding batch gives NaN).
    """
    p = true_class_probability(logits, labels)
    if valid is None:
        return batch_mean(p)
    w = valid.astype(p.dtype)
    return batch_sum(p * w) / batch_sum(w)
