"""Cumulative (all-time) mean of a pytree of observations.

AGM keeps, per modality, the mean of its mono-modal score over every training
iteration so far (carried across epochs): ``s̄ ← s̄·(n−1)/n + s/n``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class CumulativeMeanState(NamedTuple):
    """Mean of the ``count`` observations seen so far (zeros before the first one)."""

    mean: Any
    count: jax.Array


def init_cumulative_mean(template: Any) -> CumulativeMeanState:
    """Zero mean with the structure and shapes of ``template``; float32 leaves."""
    return CumulativeMeanState(
        jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), jnp.float32), template),
        jnp.zeros((), jnp.int32),
    )


def update_cumulative_mean(state: CumulativeMeanState, observation: Any) -> CumulativeMeanState:
    """Fold one observation (same structure as the mean) into the running mean."""
    n = state.count + 1
    w = 1.0 / n.astype(jnp.float32)
    mean = jax.tree.map(
        lambda m, x: (m * (1.0 - w) + jnp.asarray(x, jnp.float32) * w), state.mean, observation)
    return CumulativeMeanState(mean, n)
