"""Running per-feature mean and second moment (EMA), for EMA-matched noise fills."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmm.batch_reduce import batch_sum


class FeatureStats(NamedTuple):
    """EMA of ``mean_B(z)`` and ``mean_B(z²)`` per feature."""

    mean: jax.Array
    second_moment: jax.Array


def init_feature_stats(feature_shape) -> FeatureStats:
    """Zero mean and unit second moment (standard-normal noise before the first update)."""
    return FeatureStats(jnp.zeros(feature_shape), jnp.ones(feature_shape))


def update_feature_stats(stats: FeatureStats, z: jax.Array, momentum: float = 0.99,
                         valid: jax.Array | None = None) -> FeatureStats:
    """``μ ← βμ + (1−β) mean_B(z)``, ``s² ← βs² + (1−β) mean_B(z²)`` over the global batch's valid examples."""
    z = jax.lax.stop_gradient(z).reshape(z.shape[0], -1).reshape(z.shape)
    w = jnp.ones(z.shape[0]) if valid is None else valid.astype(z.dtype)
    w = w.reshape((-1,) + (1,) * (z.ndim - 1)) / jnp.maximum(batch_sum(w), 1.0)
    batch_mean = batch_sum(w * z)
    batch_sq = batch_sum(w * z**2)
    return FeatureStats(
        momentum * stats.mean + (1 - momentum) * batch_mean,
        momentum * stats.second_moment + (1 - momentum) * batch_sq,
    )
