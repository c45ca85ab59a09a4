"""Small helpers shared by the loss modules: L2 normalisation."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """``x / max(‖x‖, eps)`` along ``axis`` (PyTorch ``F.normalize`` semantics)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)
