"""CREMA-D-Irony (SynIB paper App. H): audio swapped for a contradicting emotion's.

Within one split, ``k = round(alpha * n_bar)`` base examples (``n_bar`` = mean
count per base class, ``k`` clipped to the split size) chosen by a permutation
seeded with ``seed`` keep their video but get the audio of a donor from the same
split whose emotion contradicts theirs, and their label becomes 6 (``IRONY``).
Contradiction map: HAP -> {SAD, FEA, DIS, ANG}; SAD, FEA, DIS, ANG -> {HAP};
NEU -> any other emotion. The donor is drawn uniformly from the pool (excluding
the example itself) with a generator seeded ``seed + index``. Donor audio is
the donor's original audio, so the result does not depend on the visiting
order, and the split keeps its size.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from jaxmm.data.readers import crema_d
from jaxmm.data.types import ArrayDataset, DatasetSplits

IRONY = "IRONY"
BASE_CLASSES = crema_d.LABEL_ORDERS["ogm"]
CONTRADICTS = {
    "HAP": ("SAD", "FEA", "DIS", "ANG"),
    "SAD": ("HAP",),
    "FEA": ("HAP",),
    "DIS": ("HAP",),
    "ANG": ("HAP",),
    "NEU": ("HAP", "SAD", "FEA", "DIS", "ANG"),
}


def irony_assignment(labels: np.ndarray, alpha: float, seed: int,
                     class_names: Sequence[str] = BASE_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Chooses which examples of one split become ironic and whose audio they get.

    Args:
      labels: ``[N]`` base labels, ids into ``class_names``.
      alpha: mutation rate; ``k = round(alpha * n_bar)`` examples are mutated.
      seed: run seed (the chosen set and every donor draw derive from it).
      class_names: the six emotion codes in label order (OGM-GE order by default).

    Returns:
      ``(mutated, donors)``: ``[k]`` int indices of the mutated examples (in the
      order drawn) and ``[k]`` int indices of their audio donors. An example with
      no possible donor in the split is skipped, so ``k`` can be smaller.
    """
    labels = np.asarray(labels)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if sorted(class_names) != sorted(CONTRADICTS):
        raise ValueError(f"class_names must be the six CREMA-D emotions, got {tuple(class_names)}")
    n_bar = np.bincount(labels, minlength=len(class_names)).mean()
    k = min(int(round(alpha * n_bar)), len(labels))
    chosen = np.random.default_rng(seed).permutation(len(labels))[:k]
    ids = {name: i for i, name in enumerate(class_names)}
    mutated, donors = [], []
    for idx in chosen:
        targets = [ids[name] for name in CONTRADICTS[class_names[labels[idx]]]]
        pool = np.flatnonzero(np.isin(labels, targets) & (np.arange(len(labels)) != idx))
        if len(pool):
            mutated.append(idx)
            donors.append(pool[np.random.default_rng(seed + int(idx)).integers(len(pool))])
    return np.asarray(mutated, np.int64), np.asarray(donors, np.int64)


def apply_irony(dataset: ArrayDataset, alpha: float, seed: int, audio_key: str = "audio") -> ArrayDataset:
    """Returns a copy of a CREMA-D split with the irony mutation applied.

    Mutated examples keep every input except ``audio_key``, which is copied from
    their donor (features are a deterministic function of the wav, so this equals
    recomputing them from the donor's file), and get label 6.

    Args:
      dataset: a CREMA-D split (``class_names`` must be the six emotions, any order).
      alpha: mutation rate, see :func:`irony_assignment`.
      seed: run seed.
      audio_key: the input to swap.

    Returns:
      the mutated split with 7 classes; ``meta['base_label']`` keeps the original
      label and ``meta['irony_donor']`` the donor index (-1 if not mutated).
    """
    names = tuple(dataset.class_names or ())
    if len(names) != 6 or dataset.num_classes != 6:
        raise ValueError(f"{dataset.name}: expected a 6-class CREMA-D split, got classes {names}")
    mutated, donors = irony_assignment(dataset.label, alpha, seed, names)
    inputs = dict(dataset.inputs)
    inputs[audio_key] = dataset.inputs[audio_key].copy()
    inputs[audio_key][mutated] = dataset.inputs[audio_key][donors]
    label = dataset.label.copy()
    label[mutated] = 6
    donor = np.full(len(label), -1, np.int32)
    donor[mutated] = donors
    return dataclasses.replace(
        dataset, inputs=inputs, label=label, num_classes=7, class_names=names + (IRONY,),
        meta={**dataset.meta, "base_label": dataset.label.copy(), "irony_donor": donor},
        name=f"{dataset.name}/irony{alpha:g}", dropped=dict(dataset.dropped))


def make_irony_splits(splits: DatasetSplits, alpha: float, seed: int) -> DatasetSplits:
    """Applies :func:`apply_irony` independently to train, val and test."""
    return DatasetSplits(*(apply_irony(s, alpha, seed) for s in (splits.train, splits.val, splits.test)))


def load_crema_d_irony(root: str | os.PathLike, alpha: float, seed: int, fold: int = 0,
                       num_frames: int = 3, **kwargs) -> DatasetSplits:
    """Loads CREMA-D with a speaker-disjoint split and applies the irony mutation.

    The paper's "non_inclusive" fold files are not available; fold ``f`` here is
    the TFDS-style 70/10/20 actor split shuffled with seed ``f``.

    Args:
      root: CREMA-D folder (see :mod:`jaxmm.data.readers.crema_d`).
      alpha: mutation rate (paper sweeps 0.1, 0.5, 1.0, 2.0).
      seed: run seed of the mutation.
      fold: actor-split seed (the paper uses folds 0, 1, 2).
      num_frames: frames per clip (3 in the paper).
      **kwargs: passed to :func:`~jaxmm.data.readers.crema_d.load_crema_d`
        (``split``, ``split_seed`` and ``label_order`` are fixed here).
    """
    base = crema_d.load_crema_d(root, split="speaker_independent", split_seed=fold, label_order="ogm",
                                num_frames=num_frames, **kwargs)
    return make_irony_splits(base, alpha, seed)
