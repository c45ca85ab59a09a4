"""Regression metrics on host arrays (numpy), with the MOSI/MOSEI sentiment conventions.

:func:`regression_report` gives the error metrics (MAE, MSE, Pearson r) and the sentiment
metrics of the MulT / MMIM evaluation scripts (``eval_mosei_senti`` in
yaohungt/Multimodal-Transformer ``src/eval_metrics.py`` and declare-lab/Multimodal-Infomax
``src/utils/eval_metrics.py``; BTW's code derives from MMIM), for
sentiment targets in ``[-3, 3]``:

- **Acc-2, two conventions.** ``acc2_nonneg``: negative (``< 0``) vs non-negative (``>= 0``)
  over all examples (MMIM's ``acc_2``). ``acc2_nonzero``: negative (``< 0``) vs positive
  (``> 0``) over the examples whose target is not exactly 0; a prediction of exactly 0
  counts as negative there (``pred > 0`` is the positive call), as in MMIM's ``acc_2_non0``,
  MulT with ``exclude_zero=True`` and MultiBench's ``eval_affect`` (whose default is this one).
- **F1.** ``f1_nonneg`` / ``f1_nonzero``: the *weighted* F1 of the same binary calls on the
  same examples, sklearn ``f1_score(..., average="weighted")``: the per-class F1 of both
  classes averaged with weights = class support. The reference scripts call
  ``f1_score(preds, truths)``, i.e. they pass the *predictions* as ``y_true``, so their
  weights are the predicted class counts; per-class F1 is symmetric, so only the weights
  differ. ``f1_support="target"`` (default) weights by the true class counts (the textbook
  weighted F1); ``f1_support="pred"`` reproduces the scripts' printed numbers exactly.
- **Acc-7 / Acc-5.** Both prediction and target are clipped to ``[-3, 3]`` (``[-2, 2]``) and
  rounded to the nearest integer (numpy's round-half-to-even, as the scripts; clipping and
  rounding commute since the bounds are integers); the accuracy is the fraction of equal
  classes, over all examples.

Degenerate inputs give NaN rather than an error: ``pearson_r`` when either array is constant
(or N = 1); ``acc2_nonzero`` and ``f1_nonzero`` when every target is exactly 0; every metric
when a prediction is NaN or infinite (a diverged run still gets a report).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

KEYS = ("mae", "mse", "pearson_r", "acc2_nonneg", "f1_nonneg", "acc2_nonzero", "f1_nonzero", "acc7", "acc5")


def regression_report(pred, target, *, f1_support: Literal["target", "pred"] = "target") -> dict[str, float]:
    """Error and sentiment metrics of scalar predictions (module docstring for the conventions).

    Args:
      pred: ``[N]`` or ``[N, 1]`` predictions.
      target: ``[N]`` or ``[N, 1]`` targets (finite).
      f1_support: the class weights of the weighted F1: ``"target"`` (true class counts,
        sklearn's ``f1_score(target, pred)``) or ``"pred"`` (predicted counts, what the
        MulT/MMIM scripts compute by passing the predictions first).

    Returns:
      ``{name: float}`` for the names in :data:`KEYS`: ``mae``, ``mse``, ``pearson_r``,
      ``acc2_nonneg``, ``f1_nonneg``, ``acc2_nonzero``, ``f1_nonzero``, ``acc7``, ``acc5``.

    Raises:
      ValueError: shapes other than ``[N]``/``[N, 1]``, different N, no examples, a
        non-finite target, or an unknown ``f1_support``.
    """
    if f1_support not in ("target", "pred"):
        raise ValueError(f"f1_support must be 'target' or 'pred', got {f1_support!r}")
    p, t = _vector(pred, "pred"), _vector(target, "target")
    if len(p) != len(t):
        raise ValueError(f"pred has {len(p)} examples but target has {len(t)}")
    if not len(t):
        raise ValueError("regression_report needs at least one example")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"target has {int(np.sum(~np.isfinite(t)))} non-finite values; targets must be finite")
    if not np.all(np.isfinite(p)):
        return {k: float("nan") for k in KEYS}

    err = p - t
    nonzero = t != 0
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err ** 2)),
        "pearson_r": _pearson(p, t),
        "acc2_nonneg": float(np.mean((p >= 0) == (t >= 0))),
        "f1_nonneg": _weighted_f1(p >= 0, t >= 0, f1_support),
        "acc2_nonzero": float(np.mean((p[nonzero] > 0) == (t[nonzero] > 0))) if nonzero.any() else float("nan"),
        "f1_nonzero": _weighted_f1(p[nonzero] > 0, t[nonzero] > 0, f1_support) if nonzero.any() else float("nan"),
        "acc7": _rounded_accuracy(p, t, 3.0),
        "acc5": _rounded_accuracy(p, t, 2.0),
    }


def _vector(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} has shape {x.shape}; regression_report takes [N] or [N, 1] arrays")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{name} has dtype {x.dtype}; regression_report takes numbers")
    return x.astype(np.float64)


def _pearson(p: np.ndarray, t: np.ndarray) -> float:
    """Pearson correlation, NaN when either side has zero variance."""
    dp, dt = p - p.mean(), t - t.mean()
    denom = np.sqrt(np.sum(dp ** 2) * np.sum(dt ** 2))
    return float(np.sum(dp * dt) / denom) if denom > 0 else float("nan")


def _weighted_f1(pred: np.ndarray, true: np.ndarray, support: str) -> float:
    """sklearn's ``average="weighted"`` F1 of boolean calls, weights from ``true`` or ``pred`` counts."""
    weights_from = true if support == "target" else pred
    total = 0.0
    for c in (False, True):
        tp = np.sum((pred == c) & (true == c))
        denom = np.sum(pred == c) + np.sum(true == c)  # 2TP + FP + FN
        if denom:
            total += np.sum(weights_from == c) * 2.0 * tp / denom
    return float(total / len(true))


def _rounded_accuracy(p: np.ndarray, t: np.ndarray, bound: float) -> float:
    return float(np.mean(np.round(np.clip(p, -bound, bound)) == np.round(np.clip(t, -bound, bound))))
