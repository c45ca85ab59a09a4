"""Logit helpers shared by methods whose losses need class distributions."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def categorical(logits: jax.Array) -> jax.Array:
    """``[B, K]`` logits as a categorical over ``max(K, 2)`` classes.

    A single binary logit ``f`` becomes ``[0, f]``, whose softmax is ``(1 − σ(f), σ(f))``, so
    softmax-based losses (JS divergence, label-masked boosting) also apply to binary heads.
    """
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits
