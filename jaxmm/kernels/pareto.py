"""MMPareto's per-group Gram matrix and rescaled combination, fused over the group's tensors.

For one parameter group with ``K`` competing term gradients ``x_{t,P}`` per tensor
``P`` and summed gradient ``g_P`` (:func:`jaxmm.transforms.mmpareto.mmpareto`)::

    G = Σ_P X_P X_Pᵀ,   w = weights(G),   h_P = K · Σ_t w_t x_{t,P},
    ĝ_P = γ · h_P · max(1, ‖g_P‖ / ‖h_P‖)   (ratio 1 where ‖h_P‖ = 0)

Why a kernel: the XLA form is a ``[K, P] @ [P, K]`` product, ``‖g_P‖``, the
combination and ``‖h_P‖`` per tensor (four passes, ~4 launches per tensor); here
the group's tensors share one packed buffer (:mod:`jaxmm.kernels._layout`): one
launch computes every Gram entry and ``‖g_P‖²`` in one read of the terms, one
launch writes ``h`` with ``‖h_P‖²``, and the final scaling fuses into the unpacking.
``‖h_P‖`` is reduced from ``h`` itself, not from ``wᵀ G_P w``, which cancels
catastrophically at the min-norm point of conflicting gradients.
Measured: nothing on an accelerator yet (``benchmarks/bench_kernels.py``); off by
default (:func:`jaxmm.kernels.enabled`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.experimental import pallas as pl

from jaxmm.kernels import _layout

Weights = Callable[[jax.Array], jax.Array]  # [K, K] Gram -> [K] weights


def _ratio(sum_norm: jax.Array, h_norm: jax.Array) -> jax.Array:
    return jnp.where(h_norm > 0, sum_norm / jnp.where(h_norm > 0, h_norm, 1.0), 1.0)


def pareto_update_reference(terms: Sequence[jax.Array], sums: Sequence[jax.Array], weights: Weights,
                            scale: Any) -> tuple[list[jax.Array], jax.Array]:
    """The transform's jnp computation for one group.

    Args:
      terms: per tensor, the ``[K, *shape]`` competing term gradients.
      sums: per tensor, the summed gradient ``g_P`` (``shape``; its dtype is the result's).
      weights: the term weights from the ``[K, K]`` Gram matrix.
      scale: γ.

    Returns:
      ``(ĝ per tensor, [K] weights)``.
    """
    k = terms[0].shape[0]
    per_leaf = [x.astype(jnp.float32).reshape(k, -1) for x in terms]
    w = weights(sum(x @ x.T for x in per_leaf))
    out = []
    for g_sum, x in zip(sums, per_leaf):
        h = (k * (w @ x)).reshape(g_sum.shape)
        h_norm = jnp.sqrt(optax.tree.norm(h, squared=True))
        sum_norm = jnp.sqrt(optax.tree.norm(g_sum.astype(jnp.float32), squared=True))
        out.append((scale * h * jnp.maximum(1.0, _ratio(sum_norm, h_norm))).astype(g_sum.dtype))
    return out, w


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a, k)]


def _gram_kernel(*refs, k: int):
    # refs: x_0..x_{k-1}, g, then one output per pair (a <= b) and ‖g‖²
    x, g = [r[...] for r in refs[:k]], refs[k][...]
    outs = refs[k + 1:]
    for o, (a, b) in zip(outs, _pairs(k)):
        o[...] = jnp.sum(x[a] * x[b], axis=0, keepdims=True)[None]
    outs[-1][...] = jnp.sum(g * g, axis=0, keepdims=True)[None]


def _combine_kernel(*refs, k: int):
    # refs: x_0..x_{k-1}, w_0..w_{k-1}, then h and ‖h‖²
    h = refs[k][0] * refs[0][...]
    for t in range(1, k):
        h = h + refs[k + t][0] * refs[t][...]
    h = k * h
    refs[-2][...] = h
    refs[-1][...] = jnp.sum(h * h, axis=0, keepdims=True)[None]


def pareto_update(terms: Sequence[jax.Array], sums: Sequence[jax.Array], weights: Weights, scale: Any, *,
                  block_rows: int = 8, interpret: bool | None = None) -> tuple[list[jax.Array], jax.Array]:
    """:func:`pareto_update_reference` as two Pallas launches over the group's tensors.

    Args:
      terms, sums, weights, scale: as for :func:`pareto_update_reference`.
      block_rows: rows of 128 elements per block (each tensor is padded to whole blocks).
      interpret: run the kernels in Pallas interpret mode; ``None``: on the CPU backend.
    """
    interpret = jax.default_backend() == "cpu" if interpret is None else interpret
    k = terms[0].shape[0]
    lay = _layout.layout([g.shape for g in sums], block_rows)
    if lay.num_blocks == 0:
        return pareto_update_reference(terms, sums, weights, scale)
    xs = list(_layout.pack(terms, lay))
    g = _layout.pack(sums, lay)
    tile = pl.BlockSpec((block_rows, _layout.LANES), lambda i: (i, 0))
    lane = pl.BlockSpec((1, 1, _layout.LANES), lambda i: (i, 0, 0))
    whole = pl.BlockSpec((1, 1, 1), lambda i: (0, 0, 0))
    partial = jax.ShapeDtypeStruct((lay.num_blocks, 1, _layout.LANES), jnp.float32)
    n_out = len(_pairs(k)) + 1
    sums_out = pl.pallas_call(functools.partial(_gram_kernel, k=k), out_shape=(partial,) * n_out,
                              grid=(lay.num_blocks,), in_specs=[tile] * (k + 1), out_specs=(lane,) * n_out,
                              interpret=interpret)(*xs, g)
    entries = {pair: jnp.sum(s) for pair, s in zip(_pairs(k), sums_out)}
    gram = jnp.stack([jnp.stack([entries[min(a, b), max(a, b)] for b in range(k)]) for a in range(k)])
    w = weights(gram)
    h, hh = pl.pallas_call(
        functools.partial(_combine_kernel, k=k), out_shape=(jax.ShapeDtypeStruct(g.shape, jnp.float32), partial),
        grid=(lay.num_blocks,), in_specs=[tile] * k + [whole] * k, out_specs=(tile, lane), interpret=interpret,
    )(*xs, *jnp.asarray(w, jnp.float32).reshape(k, 1, 1, 1))
    sum_norm = jnp.sqrt(_layout.segment_sums(sums_out[-1], lay))
    factor = scale * jnp.maximum(1.0, _ratio(sum_norm, jnp.sqrt(_layout.segment_sums(hh, lay))))
    return [(factor[i] * t).astype(s.dtype) for i, (t, s) in enumerate(zip(_layout.unpack(h, lay), sums))], w
