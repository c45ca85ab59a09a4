"""Mutual information estimated from samples: KSG (k-NN, algorithm 1) and plug-in (discrete).

BTW's modality-level weight (the BTW page of the documentation) is ``I(ŷ^m; ŷ^mm)`` over a whole
split, estimated in the official code with sklearn's ``mutual_info_regression`` (k = 3). This
module is the JAX counterpart: the Kraskov–Stögbauer–Grassberger estimator, algorithm 1, with
sklearn's conventions (max-norm in the joint space, neighbour counts strictly inside the
k-th-neighbour radius, per-variable scaling to unit variance, a tiny jitter to break ties, result
clipped at 0). Both estimators return nats and are jit-compatible (options are static); the KSG
estimator is jitted itself, since executing its blocked loop eagerly is slow.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma


@functools.partial(jax.jit, static_argnames=("k", "noise", "standardize", "clip", "block_size"))
def ksg_mutual_information(x: jax.Array, y: jax.Array, *, k: int = 3, where=None, key=None,
                           noise: float | None = None, standardize: bool = True, clip: bool = True,
                           block_size: int = 256) -> jax.Array:
    """KSG estimate (Kraskov et al. 2004, algorithm 1) of ``I(X; Y)`` in nats.

    ``Î = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩``, where ``ε_i`` is the max-norm distance from
    sample ``i`` to its k-th neighbour in the joint space and ``n_x, n_y`` count the other samples
    strictly closer than ``ε_i`` in each marginal space. Distances are computed one block of rows
    at a time, so memory is ``O(block_size · N)``.

    Args:
      x: ``[N]`` or ``[N, d_x]`` samples of X.
      y: ``[N]`` or ``[N, d_y]`` samples of Y, paired with ``x``.
      k: number of neighbours (sklearn's default 3); must be smaller than the number of samples.
      where: optional ``[N]`` boolean; excluded samples take no part (their distances are infinite
        and ``N`` counts only the included ones).
      key: PRNG key for sklearn's tie-breaking jitter; ``None`` adds no jitter.
      noise: jitter amplitude, relative to ``max(1, mean|·|)`` per column as in sklearn. ``None``
        picks ``max(1e-10, 8·eps)`` of the dtype: sklearn's ``1e-10`` is below float32 resolution
        and would not separate ties there.
      standardize: divide each column by its standard deviation first (sklearn does).
      clip: return ``max(Î, 0)`` as sklearn does.
      block_size: rows of the distance matrix computed at once.

    Returns:
      Scalar estimate in nats.
    """
    x, y = _as_columns(x, "x"), _as_columns(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}; pass paired samples.")
    if not 0 < k < n:
        raise ValueError(f"k={k} must be in [1, {n - 1}] for {n} samples; lower k or add samples.")
    valid = jnp.ones((n,), bool) if where is None else jnp.asarray(where, bool).reshape(n)
    if standardize:
        x, y = _unit_scale(x, valid), _unit_scale(y, valid)
    if key is not None:
        kx, ky = jax.random.split(key)
        x, y = _jitter(x, kx, noise, valid), _jitter(y, ky, noise, valid)

    index = jnp.arange(n)

    def counts(i):
        others = valid & (index != i)
        dx = jnp.where(others, jnp.max(jnp.abs(x - x[i]), axis=-1), jnp.inf)
        dy = jnp.where(others, jnp.max(jnp.abs(y - y[i]), axis=-1), jnp.inf)
        radius = -jax.lax.top_k(-jnp.maximum(dx, dy), k)[0][-1]
        return jnp.sum(dx < radius), jnp.sum(dy < radius)

    # Pad the rows to whole blocks (one compiled loop body, no remainder pass), then drop them.
    block = min(block_size, n)
    rows = jnp.minimum(jnp.arange(-(-n // block) * block), n - 1)
    n_x, n_y = (c[:n] for c in jax.lax.map(counts, rows, batch_size=block))
    n_valid = jnp.sum(valid)
    mean_psi = lambda c: jnp.sum(jnp.where(valid, digamma(c + 1.0), 0.0)) / n_valid
    mi = digamma(n_valid.astype(x.dtype)) + digamma(float(k)) - mean_psi(n_x) - mean_psi(n_y)
    return jnp.maximum(mi, 0.0) if clip else mi


def plugin_mutual_information(a: jax.Array, b: jax.Array, *, num_a: int, num_b: int,
                              where=None) -> jax.Array:
    """Plug-in ``I(A; B)`` in nats from the empirical joint histogram of two discrete variables.

    Args:
      a: ``[N]`` integer codes in ``[0, num_a)`` (e.g. predicted classes).
      b: ``[N]`` integer codes in ``[0, num_b)``.
      num_a: alphabet size of ``a``.
      num_b: alphabet size of ``b``.
      where: optional ``[N]`` boolean; excluded samples are not counted.

    Returns:
      Scalar ``Σ p(a,b) log p(a,b) / (p(a) p(b))`` (no bias correction).
    """
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a {a.shape} and b {b.shape} must be matching [N] integer arrays.")
    weight = jnp.ones(a.shape) if where is None else jnp.asarray(where, jnp.float32)
    joint = (jax.nn.one_hot(a, num_a) * weight[:, None]).T @ jax.nn.one_hot(b, num_b)
    joint = joint / jnp.sum(joint)
    outer = jnp.sum(joint, 1, keepdims=True) * jnp.sum(joint, 0, keepdims=True)
    ratio = jnp.where(joint > 0, joint / jnp.where(outer > 0, outer, 1.0), 1.0)
    return jnp.sum(joint * jnp.log(ratio))


def _as_columns(v: jax.Array, name: str) -> jax.Array:
    v = jnp.asarray(v)
    if not jnp.issubdtype(v.dtype, jnp.floating):
        v = v.astype(jnp.float32)
    if v.ndim == 1:
        return v[:, None]
    if v.ndim != 2:
        raise ValueError(f"{name} must be [N] or [N, d], got shape {v.shape}.")
    return v


def _unit_scale(v: jax.Array, valid: jax.Array) -> jax.Array:
    w = valid[:, None]
    count = jnp.sum(valid)
    mean = jnp.sum(jnp.where(w, v, 0.0), 0) / count
    std = jnp.sqrt(jnp.sum(jnp.where(w, (v - mean) ** 2, 0.0), 0) / count)
    return v / jnp.where(std > 0, std, 1.0)


def _jitter(v: jax.Array, key: jax.Array, noise: float | None, valid: jax.Array) -> jax.Array:
    amplitude = max(1e-10, 8 * float(jnp.finfo(v.dtype).eps)) if noise is None else noise
    mean_abs = jnp.sum(jnp.where(valid[:, None], jnp.abs(v), 0.0), 0) / jnp.sum(valid)
    scale = jnp.maximum(1.0, mean_abs)
    return v + amplitude * scale * jax.random.normal(key, v.shape, v.dtype)
