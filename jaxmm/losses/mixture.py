"""Mixtures of categorical predictions: the log of a per-example weighted mixture.

Used by IIBalance's probabilistic fusion gate (:mod:`jaxmm.monitors.budgets`) and
DMIL's gated aggregation (:mod:`jaxmm.losses.dmil`); its output is read as
logits by the cross-entropy losses.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def gated_log_probs(unimodal_logits: Sequence[jax.Array], weights: jax.Array) -> jax.Array:
    """Log of the gated mixture ``log Σ_m w_m(x) p_m(y|x)``, for CE training and inference.

    Args:
      unimodal_logits: one ``[B, K]`` array per component (``K >= 2``).
      weights: ``[B, M]`` non-negative mixture weights, summing to 1 over components.

    Returns:
      ``[B, K]`` log-probabilities (usable as logits).
    """
    for l in unimodal_logits:
        check_multiclass(l)
    log_p = jnp.stack([jax.nn.log_softmax(l, axis=-1) for l in unimodal_logits])  # [M, B, K]
    if weights.shape != log_p.shape[:2][::-1]:
        raise ValueError(f"weights {weights.shape} must be [B, M] = {log_p.shape[:2][::-1]}.")
    return jax.nn.logsumexp(log_p, axis=0, b=weights.T[..., None])


def check_multiclass(logits: jax.Array) -> None:
    """Raise a ``ValueError`` unless ``logits`` is ``[B, K]`` with ``K >= 2``."""
    if logits.ndim != 2 or logits.shape[-1] < 2:
        raise ValueError(f"logits must be [B, K] with K >= 2, got {logits.shape}; for a binary "
                         "head pass the two-column logits [0, f] (jaxmm.losses.ce.as_categorical).")
