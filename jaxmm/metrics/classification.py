"""Classification metrics on host arrays (numpy): accuracy, F1, synergy, per-source accuracy, probes.

The synergy indicator (from the DMIL paper, CVPR 2026) is the fraction of examples the fused
prediction gets right while every unimodal prediction is wrong. :func:`classification_report` reads
the unimodal predictions from the method's unimodal heads; a method without heads gets
``synergy = NaN`` there, and :func:`probe_report` gives every method the same indicator against
linear probes trained on its frozen encoder features instead.

The averaged-softmax ensemble has synergy 0 by construction on binary tasks: when both heads give
the true class probability below ½ so does their mean. With three or more classes soft voting can
pick a class neither head ranks first, so there it can be (slightly) positive.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def predict_labels(logits: np.ndarray) -> np.ndarray:
    """Class ids from ``[N, K]`` logits/probabilities, or from ``[N]``/``[N, 1]`` binary logits (> 0)."""
    logits = np.asarray(logits)
    if logits.ndim == 1:
        logits = logits[:, None]
    return _class_ids(logits)


def _class_ids(logits: np.ndarray) -> np.ndarray:
    """``[..., N]`` class ids of ``[..., N, K]`` logits (``K = 1``: one binary logit, > 0)."""
    return (logits[..., 0] > 0).astype(np.int64) if logits.shape[-1] == 1 else logits.argmax(-1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``pred == labels``."""
    _check_same_length(pred, labels)
    return float(np.mean(np.asarray(pred) == np.asarray(labels))) if len(labels) else float("nan")


def per_class_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes]`` F1 per class (0 for a class never predicted nor present)."""
    _check_same_length(pred, labels)
    return _f1(np.asarray(pred), np.asarray(labels), num_classes)


def _f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[..., num_classes]`` F1 per class of ``[..., N]`` predictions."""
    f1 = np.zeros((*pred.shape[:-1], num_classes))
    for k in range(num_classes):
        tp = np.sum((pred == k) & (labels == k), axis=-1)
        denom = np.sum(pred == k, axis=-1) + np.sum(labels == k, axis=-1)
        f1[..., k] = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of :func:`per_class_f1` over the classes."""
    return float(per_class_f1(pred, labels, num_classes).mean())


def synergy_indicator(fused_pred: np.ndarray, unimodal_preds: Sequence[np.ndarray], labels: np.ndarray) -> float:
    """Fraction of examples the fused model gets right while every unimodal predictor is wrong."""
    if not len(unimodal_preds):
        raise ValueError("synergy_indicator needs at least one unimodal prediction")
    return float(_synergy(np.asarray(fused_pred), [np.asarray(p) for p in unimodal_preds], np.asarray(labels)))


def _synergy(fused_pred: np.ndarray, unimodal_preds: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """:func:`synergy_indicator` over the last axis."""
    all_uni_wrong = np.all([p != labels for p in unimodal_preds], axis=0)
    return np.mean((fused_pred == labels) & all_uni_wrong, axis=-1)


def accuracy_by_group(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                      names: Sequence[str]) -> dict[str, float]:
    """Accuracy within each group id (e.g. PID source); NaN for an empty group."""
    pred, labels, groups = map(np.asarray, (pred, labels, groups))
    _check_same_length(pred, groups)
    return {name: float(acc) for name, acc in zip(names, _accuracy_by_group(pred == labels, groups, len(names)))}


def _accuracy_by_group(right: np.ndarray, groups: np.ndarray, num_groups: int) -> list[np.ndarray]:
    """Per group id, the accuracy over the last axis of the ``right`` indicator (NaN where the group is empty)."""
    out = []
    for g in range(num_groups):
        member = groups == g
        count = np.sum(member, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(count > 0, np.sum(right & member, axis=-1) / count, np.nan))
    return out


def classification_report(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                          unimodal_logits: Mapping[str, np.ndarray] | None = None,
                          groups: np.ndarray | None = None,
                          group_names: Sequence[str] | None = None) -> dict[str, float]:
    """All classification metrics of one evaluation as a flat dict.

    Keys: ``acc``, ``macro_f1``, ``f1/<k>``, ``acc/<modality>`` for each unimodal
    head, ``synergy`` (NaN without unimodal heads; see :func:`probe_report`),
    ``acc/source/<name>`` (when groups).
    """
    as_runs = lambda x: np.asarray(x).reshape(1, len(x), -1)  # [N] or [N, K] logits -> one run's [1, N, K]
    labels = np.asarray(labels)
    for other in (logits, *(unimodal_logits or {}).values(), *([] if groups is None else [groups])):
        _check_same_length(other, labels)
    (report,) = classification_reports(
        as_runs(logits), labels[None], num_classes, {m: as_runs(v) for m, v in (unimodal_logits or {}).items()},
        None if groups is None else np.asarray(groups)[None], group_names)
    return report


def classification_reports(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                           unimodal_logits: Mapping[str, np.ndarray] | None = None,
                           groups: np.ndarray | None = None,
                           group_names: Sequence[str] | None = None) -> list[dict[str, float]]:
    """:func:`classification_report` of every run of a grid at once (vectorised over runs).

    Args:
      logits: ``[R, N, K]`` fused logits of ``R`` runs (``K = 1``: one binary logit).
      labels: ``[R, N]`` class ids.
      unimodal_logits: modality -> ``[R, N, K]`` unimodal logits.
      groups: ``[R, N]`` group ids (e.g. PID source) or None.
      group_names: the groups' names (default: their ids).
    """
    labels = np.asarray(labels)
    pred = _class_ids(np.asarray(logits))
    uni_preds = {m: _class_ids(np.asarray(v)) for m, v in (unimodal_logits or {}).items()}
    for name, value in {"logits": pred, **{f"unimodal logits of {m}": p for m, p in uni_preds.items()},
                        **({} if groups is None else {"groups": np.asarray(groups)})}.items():
        if value.shape != labels.shape:
            raise ValueError(f"{name} cover [runs, examples] = {list(value.shape)} but the labels "
                             f"{list(labels.shape)}; pass one row per run and example")
    k = max(num_classes, 2)
    right = pred == labels
    f1 = _f1(pred, labels, k)
    columns = {"acc": np.mean(right, axis=-1), "macro_f1": f1.mean(-1)}
    columns.update({f"f1/{c}": f1[:, c] for c in range(k)})
    columns.update({f"acc/{m}": np.mean(p == labels, axis=-1) for m, p in uni_preds.items()})
    columns["synergy"] = (_synergy(pred, list(uni_preds.values()), labels) if uni_preds
                          else np.full(len(labels), np.nan))
    if groups is not None:
        groups = np.asarray(groups)
        names = group_names or [str(g) for g in range(int(np.max(groups)) + 1)]
        columns.update({f"acc/source/{n}": acc for n, acc in zip(names, _accuracy_by_group(right, groups, len(names)))})
    return [{key: float(values[r]) for key, values in columns.items()} for r in range(len(labels))]


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray, *,
                 l2: float = 1.0) -> np.ndarray:
    """Class predictions of a logistic-regression probe fit on frozen features.

    Features are standardised with the training statistics; the probe is a multinomial
    (binary: logistic) regression with inverse L2 strength ``1 / l2`` (scikit-learn's ``C``).

    Args:
      train_features: ``[N, ...]`` features the probe is fit on (flattened after the first axis).
      train_labels: ``[N]`` class ids, at least two distinct.
      eval_features: ``[M, ...]`` features to predict.
      l2: L2 penalty strength (> 0).

    Returns:
      ``[M]`` predicted class ids.
    """
    train_features = np.asarray(train_features, np.float64).reshape(len(train_features), -1)
    eval_features = np.asarray(eval_features, np.float64).reshape(len(eval_features), -1)
    _check_same_length(train_features, train_labels)
    if len(np.unique(train_labels)) < 2:
        raise ValueError("a linear probe needs training labels of at least two classes")
    if not l2 > 0:
        raise ValueError(f"l2={l2} must be positive")
    from sklearn.linear_model import LogisticRegression  # here: scikit-learn takes ~1 s to import
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features)
    probe = LogisticRegression(C=1.0 / l2, max_iter=2000).fit(scaler.transform(train_features), train_labels)
    return probe.predict(scaler.transform(eval_features))


def probe_report(fused_logits: np.ndarray, labels: np.ndarray, train_features: Mapping[str, np.ndarray],
                 train_labels: np.ndarray, eval_features: Mapping[str, np.ndarray], *,
                 l2: float = 1.0) -> dict[str, float]:
    """Unimodal accuracy and synergy measured with linear probes instead of unimodal heads.

    Works for every method (heads or not): one :func:`linear_probe` per modality reads that
    modality's encoder features.

    Args:
      fused_logits: ``[M, K]`` (or binary ``[M]``/``[M, 1]``) fused predictions on the evaluation split.
      labels: ``[M]`` evaluation labels.
      train_features: modality -> ``[N, D]`` encoder features of the training split.
      train_labels: ``[N]`` training labels.
      eval_features: modality -> ``[M, D]`` encoder features of the evaluation split.
      l2: probe L2 penalty.

    Returns:
      ``acc/probe/<modality>`` and ``synergy/probe``.
    """
    if set(train_features) != set(eval_features) or not train_features:
        raise ValueError(f"train features {sorted(train_features)} and eval features {sorted(eval_features)} "
                         "must name the same, non-empty set of modalities")
    preds = {m: linear_probe(train_features[m], train_labels, eval_features[m], l2=l2) for m in train_features}
    out = {f"acc/probe/{m}": accuracy(p, labels) for m, p in preds.items()}
    out["synergy/probe"] = synergy_indicator(predict_labels(fused_logits), list(preds.values()), labels)
    return out


def _check_same_length(a, b):
    if len(a) != len(b):
        raise ValueError(f"predictions and labels differ in length: {len(a)} vs {len(b)}")
