"""Replacement values ε for corrupted coordinates: standard noise, EMA-matched noise, batch shuffles."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm.monitors.feature_stats import FeatureStats

FILLS = ("noise", "ema", "shuffle")


def fill_values(kind: str, key: jax.Array, x: jax.Array, stats: FeatureStats | None = None) -> jax.Array:
    """Draws replacement values shaped like ``x`` (``[B, ...]``).

    Args:
      kind: ``"noise"`` — N(0, 1) (the synthetic protocols); ``"ema"`` — N(μ, s² − μ²)
        from running per-feature statistics (paper App. D); ``"shuffle"`` — the
        same features of other examples of the batch (the official random-mask code).
      key: PRNG key.
      x: the clean values.
      stats: running statistics, required for ``"ema"``.
    """
    if kind == "noise":
        return jax.random.normal(key, x.shape, x.dtype)
    if kind == "ema":
        if stats is None:
            raise ValueError("fill='ema' needs running feature statistics")
        std = jnp.sqrt(jnp.maximum(stats.second_moment - stats.mean**2, 0.0))
        return (stats.mean + std * jax.random.normal(key, x.shape)).astype(x.dtype)
    if kind == "shuffle":
        return x[jax.random.permutation(key, x.shape[0])]
    raise ValueError(f"unknown fill {kind!r}; choose one of {FILLS}")
