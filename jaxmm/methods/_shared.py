"""Helpers shared by the baseline methods: binary logits as categoricals, eval-mode passes."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def categorical(logits: jax.Array) -> jax.Array:
    """``[B, K]`` logits as a categorical over ``max(K, 2)`` classes.

    A single binary logit ``f`` becomes ``[0, f]``, whose softmax is ``(1 − σ(f), σ(f))``, so
    softmax-based losses (JS divergence, label-masked boosting) also apply to binary heads.
    """
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits


def eval_copy(model):
    """An eval-mode copy of ``model`` sharing its (possibly traced) parameters.

    Gradients flow to the parameters through the copy; its state changes (batch statistics,
    dropout streams) are discarded.
    """
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state, copy=True)
    copy.eval()
    return copy
