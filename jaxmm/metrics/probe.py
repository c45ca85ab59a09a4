"""Linear probe on frozen features: a closed-form ridge (least-squares) classifier in JAX.

The probe regresses one-hot labels on standardised features,

    W = (Zᵀ Z / N + λ I)⁻¹ Zᵀ (Y − Ȳ) / N,   b = Ȳ − (x̄ / s) W,   Z = (X − x̄) / s,

(``s``: per-feature standard deviation, floored so that dead features stay 0)
and predicts ``argmax(X W' + b)``. It has no randomness and no iterations, so
the per-modality accuracies it reports are a deterministic function of the
features; for two classes its direction is Fisher's LDA direction.
Everything is jittable and vmappable (e.g. over a leading run axis).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

STD_FLOOR = 1e-6


class LinearProbe(NamedTuple):
    """A fitted probe: ``logits = features @ weight + bias``."""

    weight: jax.Array  # [D, K]
    bias: jax.Array  # [K]


def fit_probe(features: jax.Array, labels: jax.Array, num_classes: int, l2: float = 1e-3) -> LinearProbe:
    """Fits the ridge probe.

    Args:
      features: ``[N, D]`` features (any leading shape is flattened after ``N``).
      labels: ``[N]`` integer class ids in ``[0, num_classes)``.
      num_classes: ``K`` (static).
      l2: ridge strength ``λ`` on the standardised features (> 0 keeps the solve well posed).

    Returns:
      The :class:`LinearProbe` in the original feature scale.
    """
    x = jnp.asarray(features, jnp.float32).reshape(features.shape[0], -1)
    y = jax.nn.one_hot(labels, num_classes)
    mean, std = x.mean(0), jnp.maximum(x.std(0), STD_FLOOR)
    z = (x - mean) / std
    n, d = z.shape
    gram = z.T @ z / n + l2 * jnp.eye(d)
    w = jnp.linalg.solve(gram, z.T @ (y - y.mean(0)) / n) / std[:, None]
    return LinearProbe(w, y.mean(0) - mean @ w)


def probe_logits(probe: LinearProbe, features: jax.Array) -> jax.Array:
    """``[N, K]`` probe logits."""
    return features.reshape(features.shape[0], -1) @ probe.weight + probe.bias


def probe_accuracy(train_features: jax.Array, train_labels: jax.Array, eval_features: jax.Array,
                   eval_labels: jax.Array, num_classes: int, l2: float = 1e-3) -> jax.Array:
    """Accuracy on ``eval`` of the probe fitted on ``train`` (a traced scalar)."""
    probe = fit_probe(train_features, train_labels, num_classes, l2)
    return jnp.mean(jnp.argmax(probe_logits(probe, eval_features), -1) == eval_labels)
