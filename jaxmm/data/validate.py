"""Checks of a dataset before training, with messages that say what to fix."""
from __future__ import annotations

import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits


def validate_dataset(ds: ArrayDataset) -> None:
    """Labels inside ``[0, num_classes)``, finite inputs, a non-empty split.

    Raises:
      ValueError: naming the split, the offending array and how many entries are bad.
    """
    if len(ds) == 0:
        raise ValueError(f"{ds.name}: the split is empty")
    labels = np.asarray(ds.label)
    if np.issubdtype(labels.dtype, np.integer):
        bad = (labels < 0) | (labels >= max(ds.num_classes, 2))
        if bad.any():
            raise ValueError(f"{ds.name}: {int(bad.sum())} labels outside [0, {max(ds.num_classes, 2)}), "
                             f"e.g. {labels[bad][:5].tolist()}; fix num_classes or the labels")
    for name, x in ds.inputs.items():
        if np.issubdtype(np.asarray(x).dtype, np.floating):
            finite = np.isfinite(x)
            if not finite.all():
                rows = np.nonzero(~finite.reshape(len(x), -1).all(1))[0]
                raise ValueError(f"{ds.name}: modality '{name}' has NaN/inf values in {len(rows)} examples "
                                 f"(first indices {rows[:5].tolist()}); clean or impute them before training")


def validate_splits(splits: DatasetSplits) -> None:
    """:func:`validate_dataset` on every split, plus equal per-example shapes across splits."""
    for split in (splits.train, splits.val, splits.test):
        validate_dataset(split)
    for name, x in splits.train.inputs.items():
        for split in (splits.val, splits.test):
            if split.inputs[name].shape[1:] != x.shape[1:]:
                raise ValueError(f"modality '{name}' has per-example shape {x.shape[1:]} in train but "
                                 f"{split.inputs[name].shape[1:]} in {split.name}")
