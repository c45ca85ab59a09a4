"""AV-MNIST in the MultiBench npy layout.

Layout::

    <root>/image/train_data.npy   [N, 784] pixel values 0-255
    <root>/audio/train_data.npy   [N, 112, 112] spectrogram values 0-255
    <root>/train_labels.npy       [N] digits 0-9
    (the same with test_)

Both modalities are divided by 255 and get a channel axis: ``image``
``[N, 28, 28, 1]`` and ``audio`` ``[N, 112, 112, 1]`` float32. As in MultiBench,
the last ``num_val`` (5,000) train rows are the validation split.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxmm.data.readers.validate import DataFormatError, require_path
from jaxmm.data.types import ArrayDataset, DatasetSplits

LAYOUT = """  <root>/image/{train,test}_data.npy   [N, 784] values 0-255
  <root>/audio/{train,test}_data.npy   [N, 112, 112] values 0-255
  <root>/{train,test}_labels.npy       [N] ints 0-9"""


def _load_npy(path: Path) -> np.ndarray:
    """Loads one npy file, naming it and the layout on failure."""
    require_path(path, "AV-MNIST array", LAYOUT)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(f"{path}: not a readable .npy array ({e})\nExpected layout:\n{LAYOUT}") from e


def _load_part(root: Path, part: str) -> ArrayDataset:
    """Loads and validates the ``train`` or ``test`` arrays."""
    image = _load_npy(root / "image" / f"{part}_data.npy")
    sound = _load_npy(root / "audio" / f"{part}_data.npy")
    label = _load_npy(root / f"{part}_labels.npy")
    if image.ndim != 2 or image.shape[1] != 784:
        raise DataFormatError(f"{root / 'image' / f'{part}_data.npy'}: shape {image.shape}, expected [N, 784]")
    if sound.shape[1:] != (112, 112):
        raise DataFormatError(f"{root / 'audio' / f'{part}_data.npy'}: shape {sound.shape}, expected [N, 112, 112]")
    if not len(image) == len(sound) == len(label):
        raise DataFormatError(f"{root}: {part} arrays disagree on N: image {len(image)}, audio {len(sound)}, "
                              f"labels {len(label)}")
    label = label.reshape(-1)
    if not np.all((label >= 0) & (label <= 9) & (label == np.round(label))):
        raise DataFormatError(f"{root / f'{part}_labels.npy'}: labels must be integers 0-9, "
                              f"got values {np.unique(label)[:12]}")
    return ArrayDataset(
        inputs={"image": (image.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32),
                "audio": (sound.reshape(-1, 112, 112, 1) / 255.0).astype(np.float32)},
        label=label.astype(np.int32), num_classes=10, name=f"avmnist/{part}",
        class_names=tuple(str(d) for d in range(10)))


def load_avmnist(root: str | os.PathLike, *, num_val: int = 5000) -> DatasetSplits:
    """Loads AV-MNIST train/val/test (55,000 / 5,000 / 10,000 with the full files).

    Args:
      root: the ``avmnist`` folder.
      num_val: the last ``num_val`` train rows become the validation split.

    Raises:
      FileNotFoundError, DataFormatError: naming the missing or malformed array.
    """
    root = require_path(root, "AV-MNIST root folder", LAYOUT)
    train, test = _load_part(root, "train"), _load_part(root, "test")
    if not 0 <= num_val < len(train):
        raise ValueError(f"num_val={num_val} must be in [0, {len(train)})")
    n = len(train) - num_val
    return DatasetSplits(train=train.subset(np.arange(n), "avmnist/train"),
                         val=train.subset(np.arange(n, len(train)), "avmnist/val"),
                         test=test)
