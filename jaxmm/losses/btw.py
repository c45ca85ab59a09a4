"""BTW (Beyond Two-modality Weighting): per-example, per-modality fusion weights.

Read from the official code (``JuneHou/Multimodal-Infomax-moe``: ``tools.update_kl_weights`` for
regression, ``util.assign_4probs`` for classification). For each modality ``m`` of any number:

1. instance-level ``KL_{i,m}`` between the fixed unimodal prediction and the *current* multimodal
   prediction (:func:`btw_kl`; Gaussian for regression, categorical for classification);
2. min-max normalisation per modality over the split (:func:`minmax_normalize`);
3. modality-level ``I_m = MI(ŷ^m; ŷ^mm)`` over the split (:func:`modality_mi`);
4. the target ``w*_{i,m} = k̃_{i,m} · I_m`` ("kl+mi"; "kl" keeps ``k̃`` alone), 0 where the
   modality is missing (:func:`btw_target_weights`);
5. smoothing across refreshes ``w ← s·w* + (1−s)·w`` with ``s`` moved by ±0.05 after each
   refresh from a validation loss (:class:`BTWSchedule`). Start from ``w = 1`` [INF: the code's
   initial weights are not visible].

The weights scale each modality's projected embedding before fusion (as in the official code);
they do not enter the loss. All functions are pure and jit-compatible (string options are static).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.losses.kl import bernoulli_kl, categorical_kl, gaussian_kl
from jaxmm.metrics.ksg import ksg_mutual_information, plugin_mutual_information

TASKS = ("classification", "regression")
COMBINES = ("kl+mi", "kl")
MI_ESTIMATORS = ("ksg", "plugin")
_KL_FLOOR = 1e-5   # regression code: max(1e-5, KL) before normalising
_MI_FLOOR = 1e-5   # code: max(1e-5, MI)
_DEGENERATE = {"regression": 1e-4, "classification": 0.0}  # value when max KL == min KL


def btw_kl(unimodal: jax.Array, multimodal: jax.Array, *, task: str = "classification",
           sigma_p: float = 0.1, log_sigma_q=None, where=None) -> jax.Array:
    """Instance-level KL between one modality's prediction and the multimodal prediction.

    Args:
      unimodal: the separately pre-trained unimodal model's output: ``[N, K]`` logits (or
        log-probabilities) for classification, ``[N]``/``[N, 1]`` for binary classification or
        regression.
      multimodal: the current multimodal model's output, same shape.
      task: ``"classification"``: ``KL(p^m ‖ p^mm)`` (categorical, or Bernoulli for one logit);
        ``"regression"``: ``KL(N(ŷ^m, σ_p²) ‖ N(ŷ^mm, σ_q²))``, floored at 1e-5 as in the code.
      sigma_p: the unimodal standard deviation (code: 0.1).
      log_sigma_q: ``log σ_q``, scalar or ``[N]``. The code fits it with a small MLP on the fused
        hidden vector at every refresh; ``None`` uses ``σ_q = 1`` (a simplification: the
        fitted value stays near 1).
      where: optional ``[N]`` boolean; excluded examples get 0.

    Returns:
      ``[N]`` per-example KL.
    """
    check_choice("task", task, TASKS)
    if unimodal.shape != multimodal.shape:
        raise ValueError(f"unimodal {unimodal.shape} and multimodal {multimodal.shape} predictions "
                         "must have the same shape.")
    n = unimodal.shape[0]
    if task == "regression":
        if unimodal.size != n:
            raise ValueError(f"regression predictions must be [N] or [N, 1], got {unimodal.shape}.")
        log_q = jnp.zeros((n, 1)) if log_sigma_q is None else jnp.broadcast_to(
            jnp.reshape(log_sigma_q, (-1, 1)), (n, 1))
        kl = gaussian_kl(unimodal.reshape(n, 1), jnp.full((n, 1), 2 * jnp.log(sigma_p)),
                         multimodal.reshape(n, 1), 2 * log_q)
        kl = jnp.maximum(kl, _KL_FLOOR)
    elif unimodal.ndim == 1 or unimodal.shape[-1] == 1:
        kl = bernoulli_kl(unimodal.reshape(n, -1), multimodal.reshape(n, -1)).sum(-1)
    else:
        kl = categorical_kl(unimodal, multimodal)
    return kl if where is None else jnp.where(where, kl, 0.0)


def minmax_normalize(values: jax.Array, *, where=None, degenerate: float = 0.0) -> jax.Array:
    """Min-max normalise each column over the examples (axis 0) to ``[0, 1]``.

    Args:
      values: ``[N]`` or ``[N, M]`` (one column per modality).
      where: optional boolean of the same shape; excluded entries take no part in the min and max
        and come out 0. (The classification code keeps missing entries as KL 0 inside the min;
        excluding them is our choice, and only differs when a modality is missing somewhere.)
      degenerate: the value of every included entry of a column whose max equals its min (code:
        1e-4 for regression, 0 for classification).

    Returns:
      Array of the shape of ``values``.
    """
    mask = jnp.ones(values.shape, bool) if where is None else jnp.asarray(where, bool)
    if mask.shape != values.shape:
        raise ValueError(f"where {mask.shape} must match values {values.shape}.")
    low = jnp.min(jnp.where(mask, values, jnp.inf), axis=0)
    high = jnp.max(jnp.where(mask, values, -jnp.inf), axis=0)
    span = high - low
    ok = span > 0
    scaled = jnp.where(ok, (values - low) / jnp.where(ok, span, 1.0), degenerate)
    return jnp.where(mask, scaled, 0.0)


def modality_mi(unimodal: jax.Array, multimodal: jax.Array, *, task: str = "classification",
                estimator: str | None = None, k: int = 3, key=None, where=None) -> jax.Array:
    """Modality-level ``I(ŷ^m; ŷ^mm)`` over a split, floored at 1e-5 as in the code.

    Args:
      unimodal: the unimodal outputs over the split (shapes as in :func:`btw_kl`).
      multimodal: the multimodal outputs over the split.
      task: ``"regression"`` or ``"classification"``.
      estimator: ``"ksg"`` (the code's kNN estimator; for classification it runs on the
        probability vectors) or ``"plugin"`` (MI between predicted classes, classification only).
        ``None`` picks ``"ksg"`` for regression and ``"plugin"`` for classification [INF: the
        classification code uses the KL part only].
      k: KSG neighbours (sklearn default 3).
      key: PRNG key for the KSG tie-breaking jitter (sklearn always jitters); ``None`` for none.
      where: optional ``[N]`` boolean; excluded examples take no part.

    Returns:
      Scalar MI in nats, at least 1e-5.
    """
    check_choice("task", task, TASKS)
    estimator = estimator or ("ksg" if task == "regression" else "plugin")
    check_choice("estimator", estimator, MI_ESTIMATORS)
    if estimator == "plugin":
        if task == "regression":
            raise ValueError("estimator='plugin' needs discrete predictions; use 'ksg' for "
                             "regression.")
        a, b = _predicted_class(unimodal), _predicted_class(multimodal)
        num = max(unimodal.shape[-1], 2) if unimodal.ndim > 1 else 2
        mi = plugin_mutual_information(a, b, num_a=num, num_b=num, where=where)
    else:
        if task == "classification":
            unimodal, multimodal = _probabilities(unimodal), _probabilities(multimodal)
        mi = ksg_mutual_information(unimodal, multimodal, k=k, key=key, where=where)
    return jnp.maximum(mi, _MI_FLOOR)


@functools.partial(jax.jit, static_argnames=("task", "combine", "mi_estimator", "k", "sigma_p"))
def btw_target_weights(unimodal: Sequence[jax.Array], multimodal: jax.Array, *,
                       task: str = "classification", combine: str = "kl+mi",
                       mi_estimator: str | None = None, k: int = 3, key=None, present=None,
                       sigma_p: float = 0.1, log_sigma_q=None) -> jax.Array:
    """Target weights ``w*_{i,m}`` of one split, before smoothing (one compiled program).

    Args:
      unimodal: one prediction array per modality (any number of modalities), each ``[N, ...]``.
      multimodal: the current multimodal predictions ``[N, ...]``.
      task: ``"classification"`` or ``"regression"``.
      combine: ``"kl+mi"`` (BTW) or ``"kl"`` (the BTW-kl ablation).
      mi_estimator: see :func:`modality_mi`.
      k: KSG neighbours.
      key: PRNG key for the KSG jitter (split per modality); ``None`` for none.
      present: optional ``[N, M]`` boolean, False where modality ``m`` is missing for example
        ``i``; those weights are 0 and take no part in the normalisation or the MI.
      sigma_p: see :func:`btw_kl`.
      log_sigma_q: see :func:`btw_kl`.

    Returns:
      ``[N, M]`` target weights.
    """
    check_choice("combine", combine, COMBINES)
    num_modalities = len(unimodal)
    if num_modalities == 0:
        raise ValueError("pass at least one unimodal prediction array.")
    n = multimodal.shape[0]
    mask = jnp.ones((n, num_modalities), bool) if present is None else jnp.asarray(present, bool)
    if mask.shape != (n, num_modalities):
        raise ValueError(f"present must be [N, M] = {(n, num_modalities)}, got {mask.shape}.")
    kl = jnp.stack([btw_kl(u, multimodal, task=task, sigma_p=sigma_p, log_sigma_q=log_sigma_q)
                    for u in unimodal], axis=1)
    weights = minmax_normalize(kl, where=mask, degenerate=_DEGENERATE[task])
    if combine == "kl+mi":
        keys = ([None] * num_modalities if key is None
                else list(jax.random.split(key, num_modalities)))
        mi = jnp.stack([modality_mi(u, multimodal, task=task, estimator=mi_estimator, k=k,
                                    key=kk, where=mask[:, m])
                        for m, (u, kk) in enumerate(zip(unimodal, keys))])
        weights = weights * mi
    return weights


class BTWSchedule(NamedTuple):
    """Smoothing factor ``s`` and the best validation loss seen so far."""

    smooth: jax.Array
    best_loss: jax.Array


def btw_schedule_init(smooth: float = 0.5) -> BTWSchedule:
    """Initial schedule: ``s = 0.5`` (code) and no best loss yet."""
    if not 0.0 <= smooth <= 1.0:
        raise ValueError(f"smooth={smooth} must be in [0, 1].")
    return BTWSchedule(jnp.asarray(smooth, jnp.float32), jnp.asarray(jnp.inf, jnp.float32))


def btw_smooth_weights(weights: jax.Array, target: jax.Array, schedule: BTWSchedule) -> jax.Array:
    """One refresh of the stored weights: ``w ← s · w* + (1 − s) · w``.

    The same ``s`` is used for every split (train, dev, test) refreshed at that epoch.
    """
    if weights.shape != target.shape:
        raise ValueError(f"weights {weights.shape} and target {target.shape} must match.")
    return schedule.smooth * target + (1.0 - schedule.smooth) * weights


def btw_schedule_update(schedule: BTWSchedule, val_loss, *, refreshed, step: float = 0.05
                        ) -> BTWSchedule:
    """End-of-epoch update of the smoothing schedule.

    Call it every epoch, after :func:`btw_smooth_weights` on a refresh epoch. On a refresh epoch
    ``s`` moves up by ``step`` (capped at 1) if ``val_loss`` is worse than the best loss of the
    previous epochs and down by ``step`` (floored at 0) otherwise; every epoch the best loss
    becomes ``min(best, val_loss)``. The code compares the *test* loss; we take the validation
    loss [INF] to avoid selecting on test data.

    Args:
      schedule: the current schedule.
      val_loss: this epoch's validation loss (scalar).
      refreshed: whether the weights were refreshed this epoch (bool, may be traced).
      step: the code's ``decay_rate`` 0.05.

    Returns:
      The updated schedule.
    """
    worse = val_loss > schedule.best_loss
    moved = jnp.clip(schedule.smooth + jnp.where(worse, step, -step), 0.0, 1.0)
    smooth = jnp.where(refreshed, moved, schedule.smooth)
    return BTWSchedule(smooth, jnp.minimum(schedule.best_loss, val_loss))


def btw_refresh_due(epoch: int, every: int = 5) -> bool:
    """Whether 1-based ``epoch`` refreshes the weights: every 5 (regression code) or 1 (MIMIC)."""
    if every < 1:
        raise ValueError(f"every={every} must be a positive number of epochs.")
    return epoch % every == 0


def _predicted_class(outputs: jax.Array) -> jax.Array:
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return (outputs.reshape(outputs.shape[0]) > 0).astype(jnp.int32)
    return jnp.argmax(outputs, axis=-1)


def _probabilities(logits: jax.Array) -> jax.Array:
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return jax.nn.sigmoid(logits.reshape(logits.shape[0]))
    return jax.nn.softmax(logits, axis=-1)
