"""RedReg's per-tensor orthogonal-complement update, fused over many tensors.

For every tensor ``i`` with gradient ``g``, drift ``d = θ − θ₀`` and strength ``β``
(:func:`jaxmm.transforms.redreg.redreg`, step 5)::

    ĝ = g + β · (d − ⟨d, g⟩ / (‖g‖² + 1e-12) · g)

Why a kernel: the XLA form is one reduction fusion and one elementwise fusion per
parameter tensor (60 tensors for a ResNet-18 encoder); here all tensors share one
packed buffer (:mod:`jaxmm.kernels._layout`), one launch computes both
reductions' per-block partials and one launch applies the update.
Measured: nothing on an accelerator yet (``benchmarks/bench_kernels.py``); off by
default (:func:`jaxmm.kernels.enabled`).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from jax.experimental import pallas as pl

from jaxmm.kernels import _layout

EPS = 1e-12


def orthogonal_update_reference(grads: Sequence[jax.Array], params: Sequence[jax.Array],
                                snapshots: Sequence[jax.Array], betas: jax.Array) -> list[jax.Array]:
    """The transform's jnp computation, tensor by tensor (float32 algebra, each result in its gradient's dtype).

    Args:
      grads: gradients ``g``.
      params: parameters ``θ`` (shapes as ``grads``).
      snapshots: epoch-start parameters ``θ₀``.
      betas: ``[len(grads)]`` strengths ``β``.
    """
    out = []
    for i, (g, theta, theta0) in enumerate(zip(grads, params, snapshots)):
        d32, g32 = theta.astype(jnp.float32) - theta0.astype(jnp.float32), g.astype(jnp.float32)
        d_perp = d32 - (optax.tree.vdot(d32, g32) / (optax.tree.norm(g32, squared=True) + EPS)) * g32
        out.append((g32 + betas[i] * d_perp).astype(g.dtype))
    return out


def _sums_kernel(g_ref, d_ref, dg_ref, gg_ref):
    g, d = g_ref[...], d_ref[...]
    dg_ref[...] = jnp.sum(d * g, axis=0, keepdims=True)[None]
    gg_ref[...] = jnp.sum(g * g, axis=0, keepdims=True)[None]


def _update_kernel(g_ref, d_ref, c_ref, b_ref, o_ref):
    g = g_ref[...]
    o_ref[...] = g + b_ref[0] * (d_ref[...] - c_ref[0] * g)


def orthogonal_update(grads: Sequence[jax.Array], params: Sequence[jax.Array], snapshots: Sequence[jax.Array],
                      betas: jax.Array, *, block_rows: int = 8, interpret: bool | None = None) -> list[jax.Array]:
    """:func:`orthogonal_update_reference` as two Pallas launches over all tensors.

    Args:
      grads, params, snapshots, betas: as for :func:`orthogonal_update_reference`.
      block_rows: rows of 128 elements per block (each tensor is padded to whole blocks).
      interpret: run the kernels in Pallas interpret mode; ``None``: on the CPU backend.
    """
    interpret = jax.default_backend() == "cpu" if interpret is None else interpret
    lay = _layout.layout([g.shape for g in grads], block_rows)
    if lay.num_blocks == 0:
        return list(grads)
    g = _layout.pack(grads, lay)
    d = _layout.pack([p.astype(jnp.float32) - s.astype(jnp.float32) for p, s in zip(params, snapshots)], lay)
    tile = pl.BlockSpec((block_rows, _layout.LANES), lambda i: (i, 0))
    lane = pl.BlockSpec((1, 1, _layout.LANES), lambda i: (i, 0, 0))
    scalar = pl.BlockSpec((1, 1, 1), lambda i: (i, 0, 0))
    partial = jax.ShapeDtypeStruct((lay.num_blocks, 1, _layout.LANES), jnp.float32)
    dg, gg = pl.pallas_call(_sums_kernel, out_shape=(partial, partial), grid=(lay.num_blocks,),
                            in_specs=[tile, tile], out_specs=(lane, lane), interpret=interpret)(g, d)
    coef = _layout.segment_sums(dg, lay) / (_layout.segment_sums(gg, lay) + EPS)
    beta = jnp.asarray(betas, jnp.float32)
    out = pl.pallas_call(_update_kernel, out_shape=jax.ShapeDtypeStruct(g.shape, jnp.float32),
                         grid=(lay.num_blocks,), in_specs=[tile, tile, scalar, scalar], out_specs=tile,
                         interpret=interpret)(g, d, _layout.per_block(coef, lay), _layout.per_block(beta, lay))
    return [o.astype(x.dtype) for o, x in zip(_layout.unpack(out, lay), grads)]
