"""Classification metrics on host arrays (numpy): accuracy, F1, synergy, per-source accuracy."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def predict_labels(logits: np.ndarray) -> np.ndarray:
    """Class ids from ``[N, K]`` logits/probabilities, or from ``[N]``/``[N, 1]`` binary logits (> 0)."""
    logits = np.asarray(logits)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return (logits.reshape(len(logits)) > 0).astype(np.int64)
    return logits.argmax(-1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``pred == labels``."""
    _check_same_length(pred, labels)
    return float(np.mean(np.asarray(pred) == np.asarray(labels))) if len(labels) else float("nan")


def per_class_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes]`` F1 per class (0 for a class never predicted nor present)."""
    _check_same_length(pred, labels)
    pred, labels = np.asarray(pred), np.asarray(labels)
    f1 = np.zeros(num_classes)
    for k in range(num_classes):
        tp = np.sum((pred == k) & (labels == k))
        denom = np.sum(pred == k) + np.sum(labels == k)
        f1[k] = 2 * tp / denom if denom else 0.0
    return f1


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of :func:`per_class_f1` over the classes."""
    return float(per_class_f1(pred, labels, num_classes).mean())


def synergy_indicator(fused_pred: np.ndarray, unimodal_preds: Sequence[np.ndarray], labels: np.ndarray) -> float:
    """Fraction of examples the fused model gets right while every unimodal predictor is wrong."""
    labels = np.asarray(labels)
    fused_right = np.asarray(fused_pred) == labels
    if not len(unimodal_preds):
        raise ValueError("synergy_indicator needs at least one unimodal prediction")
    all_uni_wrong = np.all([np.asarray(p) != labels for p in unimodal_preds], axis=0)
    return float(np.mean(fused_right & all_uni_wrong))


def accuracy_by_group(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                      names: Sequence[str]) -> dict[str, float]:
    """Accuracy within each group id (e.g. PID source); NaN for an empty group."""
    pred, labels, groups = map(np.asarray, (pred, labels, groups))
    _check_same_length(pred, groups)
    return {name: accuracy(pred[groups == g], labels[groups == g]) for g, name in enumerate(names)}


def classification_report(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                          unimodal_logits: Mapping[str, np.ndarray] | None = None,
                          groups: np.ndarray | None = None,
                          group_names: Sequence[str] | None = None) -> dict[str, float]:
    """All classification metrics of one evaluation as a flat dict.

    Keys: ``acc``, ``macro_f1``, ``f1/<k>``, ``acc/<modality>`` for each unimodal
    head, ``synergy`` (when unimodal heads exist), ``acc/source/<name>`` (when groups).
    """
    labels = np.asarray(labels)
    pred = predict_labels(logits)
    k = max(num_classes, 2)
    out = {"acc": accuracy(pred, labels), "macro_f1": macro_f1(pred, labels, k)}
    out.update({f"f1/{c}": float(v) for c, v in enumerate(per_class_f1(pred, labels, k))})
    uni_preds = {m: predict_labels(v) for m, v in (unimodal_logits or {}).items()}
    out.update({f"acc/{m}": accuracy(p, labels) for m, p in uni_preds.items()})
    if uni_preds:
        out["synergy"] = synergy_indicator(pred, list(uni_preds.values()), labels)
    if groups is not None:
        names = group_names or [str(g) for g in range(int(np.max(groups)) + 1)]
        out.update({f"acc/source/{n}": v for n, v in accuracy_by_group(pred, labels, groups, names).items()})
    return out


def _check_same_length(a, b):
    if len(a) != len(b):
        raise ValueError(f"predictions and labels differ in length: {len(a)} vs {len(b)}")
