"""Small helpers shared by the loss modules: option validation and L2 normalisation."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming the valid choices unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}.")


def l2_normalize(x: jax.Array, *, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """``x / max(‖x‖, eps)`` along ``axis`` (PyTorch ``F.normalize`` semantics)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)
