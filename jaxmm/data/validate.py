"""Checks of a dataset before training, with messages that say what to fix.

Each problem is one ``ValueError`` line naming the split, the array, how many entries are bad (with
the first few) and what to do; the trainer calls :func:`validate_splits` before it compiles anything,
so a bad label is not reported later as a diverging loss.
"""
from __future__ import annotations

import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits


def _first(mask: np.ndarray) -> list[int]:
    """Indices of the first few examples (rows) where ``mask`` holds."""
    return np.nonzero(mask.reshape(len(mask), -1).any(1))[0][:5].tolist()


def _check_labels(ds: ArrayDataset, where: str) -> None:
    labels = np.asarray(ds.label)
    if ds.task == "regression":
        if np.issubdtype(labels.dtype, np.floating) and not np.isfinite(labels).all():
            bad = ~np.isfinite(labels)
            raise ValueError(f"{where}: {int(bad.reshape(len(bad), -1).any(1).sum())} regression targets are "
                             f"NaN/inf (first examples {_first(bad)}); drop or impute those examples before "
                             "training")
        return
    classes = max(ds.num_classes, 2)
    need = f"a classification task needs integer class ids in [0, {classes})"
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"{where}: labels have dtype {labels.dtype}; {need}: map them to ids first "
                         "(e.g. np.unique(labels, return_inverse=True))")
    if np.issubdtype(labels.dtype, np.floating):
        finite = np.isfinite(labels)
        if not finite.all():
            raise ValueError(f"{where}: {int((~finite).sum())} labels are NaN/inf (first examples "
                             f"{_first(~finite)}); {need}: drop or fix those examples")
        fractional = labels != np.round(labels)
        if fractional.any():
            raise ValueError(f"{where}: {int(fractional.sum())} labels are not whole numbers, e.g. "
                             f"[{', '.join(f'{v:g}' for v in labels[fractional][:3])}]; {need}: cast class ids with "
                             "label.astype(int), or use task='regression' for continuous targets")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        values = labels[bad][:5]
        values = values.astype(np.int64) if np.issubdtype(values.dtype, np.floating) else values
        raise ValueError(f"{where}: {int(bad.sum())} labels outside [0, {classes}), e.g. {values.tolist()}; "
                         "fix num_classes or the labels")


def validate_dataset(ds: ArrayDataset, split: str | None = None) -> None:
    """Finite inputs; labels that fit the task; a non-empty split.

    Classification labels must be whole numbers in ``[0, num_classes)`` (integer or float dtype; NaN
    and inf are refused); regression targets must be finite.

    Args:
      ds: the split.
      split: its role (``train``, ``val``, ``test``), named in messages when ``ds.name`` does not say it.

    Raises:
      ValueError: naming the split, the offending array, how many entries are bad and what to do.
    """
    where = ds.name if not split or split in ds.name else f"{ds.name} ({split} split)"
    if len(ds) == 0:
        raise ValueError(f"{where}: the split is empty; give it examples (check the split options and the "
                         "data folder)")
    _check_labels(ds, where)
    for name, x in ds.inputs.items():
        if np.issubdtype(np.asarray(x).dtype, np.floating):
            finite = np.isfinite(x)
            if not finite.all():
                rows = np.nonzero(~finite.reshape(len(x), -1).all(1))[0]
                raise ValueError(f"{where}: modality '{name}' has NaN/inf values in {len(rows)} examples "
                                 f"(first indices {rows[:5].tolist()}); clean or impute them before training")


def validate_splits(splits: DatasetSplits) -> None:
    """:func:`validate_dataset` on every split, plus equal per-example shapes across splits."""
    for role in ("train", "val", "test"):
        validate_dataset(getattr(splits, role), role)
    for name, x in splits.train.inputs.items():
        for split in (splits.val, splits.test):
            if split.inputs[name].shape[1:] != x.shape[1:]:
                raise ValueError(f"modality '{name}' has per-example shape {x.shape[1:]} in train but "
                                 f"{split.inputs[name].shape[1:]} in {split.name}")
