"""Packed multi-tensor layout: many tensors in one ``[rows, 128]`` float32 buffer, block-aligned.

Every tensor is flattened, cast to float32 and zero-padded to a whole number of
``block_rows x 128`` blocks, so one kernel launch covers all of them and no block
straddles two tensors; per-block partial sums are folded into per-tensor sums with
a segment sum over the static block -> tensor map.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

LANES = 128


class Layout(NamedTuple):
    """Static placement of tensors in a packed buffer.

    Attributes:
      shapes: each tensor's shape.
      offsets: each tensor's first element in the flat buffer.
      block_rows: rows of a block (a block is ``block_rows * 128`` elements).
      segments: ``[num_blocks]`` int32 numpy array, the tensor each block belongs to.
    """

    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    block_rows: int
    segments: np.ndarray

    @property
    def num_blocks(self) -> int:
        return int(self.segments.shape[0])

    @property
    def rows(self) -> int:
        return self.num_blocks * self.block_rows


def layout(shapes: Sequence[Sequence[int]], block_rows: int) -> Layout:
    """The layout of tensors of ``shapes`` with blocks of ``block_rows x 128`` elements."""
    if block_rows < 1:
        raise ValueError(f"`block_rows` must be >= 1, got {block_rows!r}.")
    block = block_rows * LANES
    shapes = tuple(tuple(int(d) for d in s) for s in shapes)
    blocks = np.array([-(-int(np.prod(s, dtype=np.int64)) // block) for s in shapes], np.int64)
    offsets = tuple(int(o) * block for o in np.cumsum(blocks) - blocks)
    segments = np.repeat(np.arange(len(shapes), dtype=np.int32), blocks)
    return Layout(shapes, offsets, block_rows, segments)


def pack(tensors: Sequence[jax.Array], lay: Layout) -> jax.Array:
    """``tensors`` (trailing shapes as in ``lay``, optional common leading dims) as ``[*lead, rows, 128]`` float32."""
    block = lay.block_rows * LANES
    lead = tensors[0].shape[: tensors[0].ndim - len(lay.shapes[0])]
    parts = []
    for t, shape in zip(tensors, lay.shapes):
        flat = t.astype(jnp.float32).reshape(*lead, -1)
        pad = -flat.shape[-1] % block
        parts.append(jnp.pad(flat, [(0, 0)] * len(lead) + [(0, pad)]))
    return jnp.concatenate(parts, axis=-1).reshape(*lead, lay.rows, LANES)


def unpack(packed: jax.Array, lay: Layout) -> list[jax.Array]:
    """The float32 tensors of a ``[rows, 128]`` buffer, in ``lay``'s shapes."""
    flat = packed.reshape(-1)
    return [flat[o:o + int(np.prod(s, dtype=np.int64))].reshape(s) for o, s in zip(lay.offsets, lay.shapes)]


def segment_sums(partials: jax.Array, lay: Layout) -> jax.Array:
    """Per-tensor sums ``[num_tensors]`` of ``[num_blocks, 1, 128]`` per-block lane partial sums."""
    return jax.ops.segment_sum(jnp.sum(partials, axis=(1, 2)), jnp.asarray(lay.segments),
                               num_segments=len(lay.shapes), indices_are_sorted=True)


def per_block(values: jax.Array, lay: Layout) -> jax.Array:
    """Per-tensor scalars ``[num_tensors]`` broadcast to ``[num_blocks, 1, 1]`` (each block's tensor's value)."""
    return values[jnp.asarray(lay.segments)].reshape(-1, 1, 1)
