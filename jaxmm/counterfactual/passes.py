"""Counterfactual forward passes vmapped over which modality is corrupted."""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp


def stack_counterfactuals(clean: Mapping[str, jax.Array], corrupted: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Stacks one input set per corrupted modality.

    Entry ``i`` along the new leading axis has modality ``order[i]`` corrupted and
    every other modality clean, where ``order`` is the key order of ``corrupted``.

    Returns:
      modality -> ``[M, B, ...]`` with ``M = len(corrupted)``.
    """
    order = list(corrupted)
    unknown = set(order) - set(clean)
    if unknown:
        raise ValueError(f"corrupted modalities {sorted(unknown)} are not among the inputs {sorted(clean)}")
    out = {}
    for name, x in clean.items():
        which = jnp.array([m == name for m in order])
        alt = corrupted.get(name, x)
        out[name] = jnp.where(which.reshape((-1,) + (1,) * x.ndim), alt[None], x[None])
    return out


def counterfactual_outputs(forward: Callable, clean: Mapping[str, jax.Array],
                           corrupted: Mapping[str, jax.Array]):
    """``forward`` on every single-modality corruption at once (one vmapped pass).

    Args:
      forward: ``inputs dict -> pytree`` (e.g. fused logits).
      clean: modality -> clean ``[B, ...]`` values.
      corrupted: modality -> corrupted ``[B, ...]`` values, for each modality to corrupt.

    Returns:
      ``forward``'s output with a leading axis over ``corrupted``'s modalities.
    """
    return jax.vmap(forward)(stack_counterfactuals(clean, corrupted))
