"""MultiBench affect pickles: MOSI, MOSEI, MUStARD (sarcasm), UR-FUNNY (humor).

A file is a pickle of ``{'train': d, 'valid': d, 'test': d}``, each ``d`` holding
``'vision' [N, T, Dv]``, ``'audio' [N, T, Da]``, ``'text' [N, T, 300]``,
``'labels'`` (``[N]``, ``[N, 1]`` or ``[N, 1, 1]``) and usually ``'id'``.
Sequences are left zero-padded. Cleaning as MultiBench: rows whose text is all
zeros are dropped (``empty_text``), ``-inf`` audio values become 0, and the
content start is the first non-zero text step. The arrays stay ``[N, T, D]``
(fixed T for jit); ``padding="right"`` moves each sequence's content to the
front, and ``meta['length']`` holds the number of content steps. Unaligned
(MulT ``noalign``) files, whose modalities differ in length, get per-modality
starts (first non-zero step) and ``meta['length/<modality>']``.

File names: ``mosi_raw.pkl``, ``mosei_raw.pkl``, ``sarcasm.pkl``, ``humor.pkl``
(MultiBench) and ``<name>_data.pkl`` / ``<name>_data_noalign.pkl`` (MulT); see
:data:`FILES`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from jaxmm.data.readers.validate import DataFormatError, logger, require_path
from jaxmm.data.types import ArrayDataset, DatasetSplits

FILES = {
    ("mosi", "raw"): "mosi_raw.pkl",
    ("mosi", "mult"): "mosi_data.pkl",
    ("mosi", "mult_noalign"): "mosi_data_noalign.pkl",
    ("mosei", "raw"): "mosei_raw.pkl",
    ("mosei", "mult"): "mosei_senti_data.pkl",
    ("mosei", "mult_noalign"): "mosei_senti_data_noalign.pkl",
    ("sarcasm", "raw"): "sarcasm.pkl",
    ("humor", "raw"): "humor.pkl",
}
SENTIMENT = frozenset({"mosi", "mosei"})
MODALITIES = ("vision", "audio", "text")
SPLITS = (("train", "train"), ("val", "valid"), ("test", "test"))
LAYOUT = """  <file>.pkl = pickle of {'train': d, 'valid': d, 'test': d}
  d = {'vision': [N, T, Dv], 'audio': [N, T, Da], 'text': [N, T, 300], 'labels': [N] | [N, 1] | [N, 1, 1], 'id': ...}
  sequences left zero-padded; file names: """ + ", ".join(sorted(set(FILES.values())))


def _clean_split(d: dict, dataset: str, task: str, padding: str, z_norm: bool, name: str,
                 where: str) -> ArrayDataset:
    """Validates and cleans one split dict (``where`` names file and split in errors)."""
    missing = [k for k in (*MODALITIES, "labels") if k not in d]
    if missing:
        raise DataFormatError(f"{where}: missing keys {missing}\nExpected layout:\n{LAYOUT}")
    arrays = {m: np.array(d[m], np.float32) for m in MODALITIES}
    labels = np.asarray(d["labels"], np.float32)
    n = len(labels)
    for m, a in arrays.items():
        if a.ndim != 3 or a.shape[0] != n:
            raise DataFormatError(f"{where}: '{m}' has shape {a.shape}, expected [N={n}, T, D]")
    aligned = len({a.shape[1] for a in arrays.values()}) == 1
    if labels.size != n:
        raise DataFormatError(f"{where}: labels have shape {labels.shape}, expected one value per example")
    labels = labels.reshape(n)
    if dataset not in SENTIMENT and not np.isin(labels, (0.0, 1.0)).all():
        raise DataFormatError(f"{where}: {dataset} labels must be 0 or 1, got {np.unique(labels)[:10]}")
    neg_inf = np.isneginf(arrays["audio"])
    if neg_inf.any():
        logger.info("%s: replaced %d -inf audio values with 0", where, int(neg_inf.sum()))
        arrays["audio"][neg_inf] = 0.0
    keep = np.any(arrays["text"] != 0, axis=(1, 2))
    dropped = {"empty_text": int((~keep).sum())} if not keep.all() else {}
    if dropped:
        logger.warning("%s: dropped %d rows whose text is all zeros", where, dropped["empty_text"])
    arrays = {m: a[keep] for m, a in arrays.items()}
    labels = labels[keep]
    text_start = np.argmax(np.any(arrays["text"] != 0, axis=2), axis=1)
    meta = {}
    for m, a in arrays.items():
        start = text_start if aligned else np.argmax(np.any(a != 0, axis=2), axis=1)
        a[np.arange(a.shape[1])[None] < start[:, None]] = 0.0
        if z_norm:
            a = _z_norm(a, start)
        arrays[m] = _shift_left(a, start) if padding == "right" else a
        if m == "text" or not aligned:
            meta["length" if m == "text" else f"length/{m}"] = (a.shape[1] - start).astype(np.int32)
    if task == "classification":
        target = (labels > 0) if dataset in SENTIMENT else (labels >= 1)
        label, num_classes, names = target.astype(np.int32), 2, ("negative", "positive")
    elif dataset in SENTIMENT:
        label, num_classes, names = labels, 1, None
    else:
        label, num_classes, names = np.where(labels < 1, -1.0, 1.0).astype(np.float32), 1, None
    return ArrayDataset(inputs=arrays, label=label, num_classes=num_classes, meta=meta, name=name,
                        class_names=names, dropped=dropped, task=task)


def _z_norm(a: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per-example, per-feature standardisation over the steps from ``start`` on (NaN-safe)."""
    w = (np.arange(a.shape[1])[None] >= start[:, None])[..., None].astype(np.float32)
    count = np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    mean = (a * w).sum(axis=1, keepdims=True) / count
    std = np.sqrt((((a - mean) * w) ** 2).sum(axis=1, keepdims=True) / count)
    return np.nan_to_num((a - mean) / np.where(std > 0, std, 1.0) * w).astype(np.float32)


def _shift_left(a: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Moves each row's content (from ``start``) to the front, zero-filling the tail."""
    steps = a.shape[1]
    src = np.arange(steps)[None] + start[:, None]
    valid = src < steps
    out = np.take_along_axis(a, np.minimum(src, steps - 1)[..., None], axis=1)
    return np.where(valid[..., None], out, 0.0).astype(np.float32)


def load_multibench_affect(path_or_root: str | os.PathLike, dataset: str = "mosi", *, variant: str = "raw",
                           task: str = "classification", padding: str = "left",
                           z_norm: bool = False) -> DatasetSplits:
    """Loads a MultiBench affect pickle into train/val/test splits.

    Args:
      path_or_root: the ``.pkl`` file, or a folder holding it under its standard name.
      dataset: ``"mosi"``, ``"mosei"``, ``"sarcasm"`` (MUStARD) or ``"humor"`` (UR-FUNNY).
      variant: ``"raw"`` (MultiBench), ``"mult"`` or ``"mult_noalign"`` (MulT); picks the file name.
      task: ``"classification"`` (2 classes: sentiment ``> 0``; sarcasm/humor 0/1 as stored)
        or ``"regression"`` (float target, ``num_classes=1``: sentiment in [-3, 3];
        sarcasm/humor mapped ``< 1 -> -1``, else 1 as MultiBench does).
      padding: ``"left"`` (as stored) or ``"right"`` (content first).
      z_norm: standardise every example's features over its content steps.

    Returns:
      :class:`DatasetSplits` with ``vision``, ``audio``, ``text`` ``[N, T, D]`` float32
      and ``meta['length']``.

    Raises:
      FileNotFoundError: when the file is missing.
      DataFormatError: when the pickle does not follow the layout.
    """
    if (dataset, variant) not in FILES:
        raise ValueError(f"unknown dataset/variant {dataset!r}/{variant!r}; known: {sorted(FILES)}")
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if padding not in ("left", "right"):
        raise ValueError(f"padding must be 'left' or 'right', got {padding!r}")
    path = Path(path_or_root)
    if path.is_dir() or not path.suffix:
        path = path / FILES[(dataset, variant)]
    path = require_path(path, f"MultiBench {dataset} pickle", LAYOUT)
    try:
        with open(path, "rb") as f:
            content = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError) as e:
        raise DataFormatError(f"{path}: not a readable pickle ({e})\nExpected layout:\n{LAYOUT}") from e
    if not isinstance(content, dict) or any(not isinstance(content.get(key), dict) for _, key in SPLITS):
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataFormatError(f"{path}: expected a dict of dicts with keys train/valid/test, got {keys}\n"
                              f"Expected layout:\n{LAYOUT}")
    return DatasetSplits(*(_clean_split(content[key], dataset, task, padding, z_norm, f"{dataset}/{name}",
                                        f"{path} split '{key}'") for name, key in SPLITS))
