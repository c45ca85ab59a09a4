"""The synergy subset of a test set (SynIB, Table 2): examples no unimodal predictor gets right.

SynIB evaluates every method on all test examples and on the examples misclassified by the
unimodal predictors of the same protocol (2 modalities × 3 seeds in the paper). Two rules, as
the official ``scripts/compute_synergy_subset.py`` defines them:

- ``all`` (the paper's): every predictor of every modality is wrong;
- ``majority`` (looser): for every modality, a strict majority of its predictors is wrong
  (more than half: with an even number a tie does not count as wrong, e.g. 1 of 2).

Accuracy on the subset is plain accuracy restricted to it
(:func:`jaxmm.metrics.classification.accuracy`, NaN on an empty subset).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from jaxmm.metrics.classification import predict_labels

RULES = ("all", "majority")


def _class_ids(pred) -> np.ndarray:
    """Class ids from ``[N]`` ids or ``[N, K]`` scores."""
    pred = np.asarray(pred)
    return pred if pred.ndim == 1 else predict_labels(pred)


def synergy_subset(unimodal_preds: Mapping[str, Sequence[np.ndarray]], labels: np.ndarray,
                   rule: str = "all") -> np.ndarray:
    """``[N]`` bool mask of the test examples the unimodal predictors misclassify.

    Args:
      unimodal_preds: modality -> one prediction per predictor (seed): ``[N]`` class ids or
        ``[N, K]`` logits/probabilities (class = argmax; ``[N, 1]``: a binary logit, class = ``> 0``).
      labels: ``[N]`` true class ids.
      rule: ``all`` (every predictor wrong) or ``majority`` (per modality, more than half of its
        predictors wrong; every modality so).

    Raises:
      ValueError: an unknown rule, no modality, a modality without predictions, or predictions
        whose length differs from the labels'.
    """
    if rule not in RULES:
        raise ValueError(f"synergy_subset: unknown rule {rule!r}; choose one of {RULES}")
    if not unimodal_preds:
        raise ValueError("synergy_subset needs the predictions of at least one modality")
    labels = np.asarray(labels)
    subset = np.ones(len(labels), bool)
    for modality, preds in unimodal_preds.items():
        if not len(preds):
            raise ValueError(f"synergy_subset: modality {modality!r} has no predictions; give one per seed")
        wrong = []
        for p in preds:
            ids = _class_ids(p)
            if ids.shape != labels.shape:
                raise ValueError(f"synergy_subset: a {modality!r} prediction has {len(ids)} examples, the labels "
                                 f"{len(labels)}; pass predictions of the same test split")
            wrong.append(ids != labels)
        count = np.sum(wrong, axis=0)
        subset &= count == len(wrong) if rule == "all" else count >= len(wrong) // 2 + 1
    return subset
