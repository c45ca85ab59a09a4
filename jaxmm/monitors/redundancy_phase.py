"""RedReg's redundant-phase monitor and the observations it reads.

Per modality ``m`` at step ``t`` of an epoch (histories and EMA reset at every
epoch start):

1. confidence ``p_m(t)``: batch mean of the unimodal true-class probability
   (:func:`jaxmm.monitors.scores.confidence`);
2. effective-gain growth over a window of ``W`` steps,
   ``S_m = (mean(H[-W:]) − mean(H[-W-1:-1])) / (|mean(H[-W-1:-1])| + 1e-12)``
   with ``H`` this epoch's confidences; ``S_m = 1`` while ``len(H) ≤ W``;
3. redundancy score ``red_m`` from two noisy views of the input
   (:func:`noisy_views`, :func:`redundancy_score`);
4. EMA normalisation ``ē ← μ ē + (1 − μ) red`` then ``\\hat{red} = red / (ē + 1e-12)``;
5. indicator ``r_m = \\hat{red}_m − γ · max(S_m, 0)``; RedReg intervenes on the
   dominant modality when ``r_{m*} > R``.

Paper vs official code (xia-zhe/RedReg, ``main_RedReg.py``): γ = 0.6 in the
code, the paper reports γ ≈ 0.5 as best (default here, pass ``gamma=0.6`` for
the code). The code clamps the noisy *visual* views to [0, 1] although the
frames are already normalised (``noisy_views(..., clip=(0, 1))`` reproduces it).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.batch_reduce import batch_mean, draw_rows

_EPS = 1e-12


class RedundancyPhaseState(NamedTuple):
    """Monitor state (per-modality axis first).

    Attributes:
      history: ``[M, W + 1]`` float32, the last ``W + 1`` confidences of the
        running epoch, oldest first.
      length: int32, confidences recorded in the running epoch.
      ema: ``[M]`` float32 EMA of the redundancy score.
      epoch: int32, the running epoch (−1 before the first step).
      growth: ``[M]`` float32 ``S_m`` of the last step.
      indicator: ``[M]`` float32 ``r_m`` of the last step (the monitor output).
    """

    history: jax.Array
    length: jax.Array
    ema: jax.Array
    epoch: jax.Array
    growth: jax.Array
    indicator: jax.Array


def init_redundancy_phase(num_modalities: int, window: int = 10) -> RedundancyPhaseState:
    """Empty monitor for ``num_modalities`` modalities with a ``window``-step growth window."""
    if window < 1:
        raise ValueError(f"redundancy_phase: `window` must be >= 1, got {window}.")
    return RedundancyPhaseState(
        history=jnp.zeros((num_modalities, window + 1), jnp.float32),
        length=jnp.zeros((), jnp.int32),
        ema=jnp.zeros((num_modalities,), jnp.float32),
        epoch=jnp.full((), -1, jnp.int32),
        growth=jnp.ones((num_modalities,), jnp.float32),
        indicator=jnp.zeros((num_modalities,), jnp.float32),
    )


def update_redundancy_phase(state: RedundancyPhaseState, *, confidence: jax.Array,
                            redundancy: jax.Array, epoch, gamma: float = 0.5,
                            momentum: float = 0.9) -> RedundancyPhaseState:
    """Fold one step's observations into the monitor.

    Args:
      state: monitor state.
      confidence: ``[M]`` confidences ``p_m(t)``.
      redundancy: ``[M]`` raw redundancy scores ``red_m(t)``.
      epoch: current epoch; a change resets the history and the EMA first.
      gamma: weight γ of the growth rate (paper ≈ 0.5, code 0.6).
      momentum: EMA momentum μ (code 0.9).

    Returns:
      The new state; ``indicator`` holds ``r_m(t)``.
    """
    epoch = jnp.asarray(epoch, jnp.int32)
    reset = epoch != state.epoch
    history = jnp.where(reset, 0.0, state.history)
    length = jnp.where(reset, 0, state.length) + 1
    ema = jnp.where(reset, 0.0, state.ema)

    history = jnp.concatenate([history[:, 1:], jnp.asarray(confidence, jnp.float32)[:, None]], 1)
    window = history.shape[1] - 1
    recent, previous = jnp.mean(history[:, 1:], 1), jnp.mean(history[:, :-1], 1)
    growth = jnp.where(length > window, (recent - previous) / (jnp.abs(previous) + _EPS), 1.0)

    redundancy = jnp.asarray(redundancy, jnp.float32)
    ema = momentum * ema + (1.0 - momentum) * redundancy
    indicator = redundancy / (ema + _EPS) - gamma * jnp.maximum(growth, 0.0)
    return RedundancyPhaseState(history, length, ema, epoch, growth, indicator)


def noisy_views(key: jax.Array, x: jax.Array, sigma: float = 0.03,
                clip: tuple[float, float] | None = None) -> tuple[jax.Array, jax.Array]:
    """Two views ``x + σ ε_k`` (k = 1, 2) of an input batch, optionally clipped (code: visual to [0, 1]).

    The noise of each example is that of one draw over the global batch (:func:`~jaxmm.batch_reduce.draw_rows`).
    """
    k1, k2 = jax.random.split(key)
    views = [x + sigma * draw_rows(functools.partial(jax.random.normal, dtype=x.dtype), k, x.shape)
             for k in (k1, k2)]
    if clip is not None:
        views = [jnp.clip(v, *clip) for v in views]
    return views[0], views[1]


def redundancy_score(features_1: jax.Array, features_2: jax.Array, view_1: jax.Array,
                     view_2: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """``red = mean((φ(x¹) − φ(x²))²) / (mean((x¹ − x²)²) + 1e-12)``, means over the global batch.

    Args:
      features_1, features_2: encoder feature maps (before pooling, eval mode)
        of the two views.
      view_1, view_2: the two noisy views.
      valid: optional ``[B]`` 0/1 mask of the examples (padding 0); ``None``: all.

    Returns:
      float32 scalar, gradient stopped (0 for an all-padding batch).
    """
    def msd(a, b):
        a, b = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
        per_example = jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)).reshape(a.shape[0], -1)
        return batch_mean(jnp.mean(per_example, 1), where=valid)

    return msd(features_1, features_2) / (msd(view_1, view_2) + _EPS)


def co_information_similarity(features: Sequence[jax.Array], valid: jax.Array | None = None) -> jax.Array:
    """Mean cosine similarity of the pooled features over the global batch, averaged over modality pairs.

    Args:
      features: per-modality ``[B, D]`` pooled features (same D), at least two.
      valid: optional ``[B]`` 0/1 mask of the examples (padding 0); ``None``: all.

    Returns:
      float32 scalar ``sim(t)``; for two modalities ``(1/B) Σ_i cos(z_a,i, z_v,i)``.
    """
    if len(features) < 2:
        raise ValueError("co_information_similarity: needs features of at least 2 modalities.")
    widths = {int(np.prod(f.shape[1:])) for f in features}
    if len(widths) != 1:
        raise ValueError(f"co_information_similarity: the modalities' features differ in width {sorted(widths)}; "
                         f"cosines need one common width (e.g. 512 for both ResNet encoders).")
    unit = [x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)
            for x in (jax.lax.stop_gradient(f).reshape(f.shape[0], -1).astype(jnp.float32)
                      for f in features)]
    pairs = [batch_mean(jnp.sum(a * b, -1), where=valid) for i, a in enumerate(unit) for b in unit[i + 1:]]
    return jnp.mean(jnp.stack(pairs))
