"""Corruption masks and the gate ``g(x, M) = (1 − M) ⊙ x + M ⊙ ε`` (SynIB App. D).

``M = 1`` means "corrupt this coordinate".
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm.batch_reduce import draw_rows


def random_mask(key: jax.Array, shape, rate) -> jax.Array:
    """``M_j ~ Bernoulli(rate)`` independently per coordinate and example (float 0/1).

    ``shape[0]`` is the example axis: the rows are those of one draw over the global batch.
    """
    return draw_rows(lambda k, s: jax.random.bernoulli(k, rate, s), key, tuple(shape)).astype(jnp.float32)


def corrupt(x: jax.Array, mask: jax.Array, fill: jax.Array) -> jax.Array:
    """``(1 − M) ⊙ x + M ⊙ fill``; ``mask`` may be soft (a relaxation) or hard."""
    mask = mask.astype(x.dtype)
    return (1 - mask) * x + mask * fill
