"""A per-modality buffer in the model's non-parameter state, for evaluation passes.

A method's ``forward`` sees only the model, not the method state, so values the evaluation pass
needs (BTW's mean weights, IIBalance's budgets) live in the model as a non-trainable variable
that the ``epoch_end`` hook overwrites (:func:`set_buffer`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.transforms._tree import put_like

MAX_MODALITIES = 16  # buffer length: the extra modules are built before the modalities are known


class BufferValue(nnx.Variable):
    """Non-trainable per-modality values read by an evaluation pass."""


class ModalityBuffer(nnx.Module):
    """``MAX_MODALITIES`` values (``fill`` at start); ``read(M)`` returns the first ``M``."""

    def __init__(self, fill: float = 1.0):
        self.values = BufferValue(jnp.full((MAX_MODALITIES,), fill, jnp.float32))

    def read(self, num_modalities: int) -> jax.Array:
        """The first ``num_modalities`` values."""
        return self.values[...][:num_modalities]


def check_modalities(num_modalities: int, method: str) -> None:
    """Raise unless the buffer can hold one value per modality."""
    if num_modalities > MAX_MODALITIES:
        raise ValueError(f"{method} supports at most {MAX_MODALITIES} modalities, got {num_modalities}.")


def set_buffer(rest, name: str, values) -> object:
    """``rest`` (stacked over runs) with ``extras/<name>``'s first ``M`` values set to ``values [R, M]``."""
    def swap(path, leaf):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        if keys[:3] != ["extras", name, "values"]:
            return leaf
        return put_like(jnp.asarray(leaf).at[:, :values.shape[1]].set(values), leaf)

    return jax.tree_util.tree_map_with_path(swap, rest)
