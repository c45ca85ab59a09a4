"""Replacement values ε for corrupted coordinates: standard noise, EMA-matched noise, batch shuffles."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import device_count, draw_rows, gather_rows, local_rows
from jaxmm.monitors.feature_stats import FeatureStats

FILLS = ("noise", "ema", "shuffle")


def fill_values(kind: str, key: jax.Array, x: jax.Array, stats: FeatureStats | None = None) -> jax.Array:
    """Draws replacement values shaped like ``x`` (``[B, ...]``); draws and shuffles span the global batch.

    Args:
      kind: ``"noise"`` — N(0, 1) (the synthetic protocols); ``"ema"`` — N(μ, s² − μ²)
        from running per-feature statistics (paper App. D); ``"shuffle"`` — the
        same features of other examples of the (global) batch (the official random-mask code).
        Integer inputs (uint8 video frames) get uniform noise over the dtype's range
        for ``"noise"`` and rounded, clipped draws for ``"ema"``.
      key: PRNG key.
      x: the clean values.
      stats: running statistics, required for ``"ema"``.

    Raises:
      ValueError: for an unknown ``kind``, or ``"ema"`` without ``stats``.
    """
    check_choice("kind", kind, FILLS)
    integer = jnp.issubdtype(x.dtype, jnp.integer)
    if kind == "noise":
        if integer:
            info = jnp.iinfo(x.dtype)
            return draw_rows(lambda k, s: jax.random.randint(k, s, info.min, info.max + 1, jnp.int32),
                             key, x.shape).astype(x.dtype)
        return draw_rows(lambda k, s: jax.random.normal(k, s, x.dtype), key, x.shape)
    if kind == "ema":
        if stats is None:
            raise ValueError("fill='ema' needs running feature statistics")
        std = jnp.sqrt(jnp.maximum(stats.second_moment - stats.mean**2, 0.0))
        draw = stats.mean + std * draw_rows(jax.random.normal, key, x.shape)
        if integer:
            info = jnp.iinfo(x.dtype)
            draw = jnp.clip(jnp.round(draw), info.min, info.max)
        return draw.astype(x.dtype)
    return local_rows(gather_rows(x)[jax.random.permutation(key, x.shape[0] * device_count())])  # "shuffle"
