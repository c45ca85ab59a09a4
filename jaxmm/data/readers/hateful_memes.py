"""Hateful Memes: jsonl annotations + meme images.

Layout::

    <root>/img/<id>.png
    <root>/train.jsonl, dev_seen.jsonl, test_seen.jsonl   (phase 2; phase 1: dev.jsonl, test.jsonl)
    each line: {"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}

``label`` is optional (unlabelled test files): such examples get label -1 and are
counted in ``meta['has_label']``. Inputs: ``image`` uint8 ``[N, S, S, 3]`` and
``text``: a numpy string array unless a ``text_encoder`` turns the list of
strings into a numeric ``[N, ...]`` array (do that before training).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from jaxmm.data.readers import frames
from jaxmm.data.readers.validate import DataFormatError, DropLog, check_nonempty, require_path, stack_or_empty
from jaxmm.data.types import ArrayDataset, DatasetSplits

CLASS_NAMES = ("not_hateful", "hateful")
LAYOUT = """  <root>/img/<id>.png
  <root>/<split>.jsonl   one JSON object per line: {"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}
                         (label optional); phase 2: train, dev_seen, test_seen; phase 1: dev, test"""


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Reads annotation lines, checking each has ``img`` and ``text`` and a 0/1 ``label`` if any.

    Raises:
      FileNotFoundError: if the file is missing.
      DataFormatError: naming file and line for invalid JSON, missing keys or a bad label.
    """
    path = require_path(path, "Hateful Memes annotation file", LAYOUT)
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{where}: invalid JSON ({e})") from None
        if not isinstance(record, dict) or "img" not in record or "text" not in record:
            raise DataFormatError(f"{where}: expected an object with 'img' and 'text' keys, got {line[:80]!r}")
        if "label" in record and record["label"] not in (0, 1):
            raise DataFormatError(f"{where}: label {record['label']!r} is not 0 or 1")
        records.append(record)
    if not records:
        raise DataFormatError(f"{path}: no annotations\nExpected layout:\n{LAYOUT}")
    return records


def _load_split(root: Path, file: str, image_size: int, text_encoder, strict: bool, progress: bool) -> ArrayDataset:
    """Loads one jsonl file and its images."""
    records = read_jsonl(root / file)
    log = DropLog(f"hateful_memes/{Path(file).stem}", LAYOUT, strict)
    images, texts, labels = [], [], []
    for record in tqdm(records, desc=log.name, disable=not progress):
        path = root / record["img"]
        if not path.exists():
            log.drop("missing_image", path)
            continue
        try:
            images.append(frames.read_image(path, image_size))
        except DataFormatError as e:
            log.drop("bad_image", path, str(e))
            continue
        texts.append(str(record["text"]))
        labels.append(int(record.get("label", -1)))
    dropped = log.summary()
    check_nonempty(len(labels), len(records), log.name, LAYOUT, dropped)
    label = np.asarray(labels, np.int32)
    text = np.asarray(text_encoder(texts)) if text_encoder is not None else np.asarray(texts, dtype=str)
    return ArrayDataset(
        inputs={"image": stack_or_empty(images, (image_size, image_size, 3), np.uint8), "text": text},
        label=label, num_classes=2, meta={"has_label": label >= 0}, name=log.name,
        class_names=CLASS_NAMES, dropped=dropped)


def load_hateful_memes(root: str | os.PathLike, *, files: Sequence[str] | None = None, image_size: int = 224,
                       text_encoder: Callable[[list[str]], np.ndarray] | None = None, strict: bool = False,
                       progress: bool = False) -> DatasetSplits:
    """Loads Hateful Memes train/val/test.

    Args:
      root: the release folder (``img/`` and the jsonl files).
      files: ``(train, val, test)`` jsonl names; default phase 2
        ``("train.jsonl", "dev_seen.jsonl", "test_seen.jsonl")``, falling back to
        phase 1 ``dev.jsonl``/``test.jsonl`` when the ``_seen`` files are absent.
      image_size: images are resized to ``image_size x image_size``.
      text_encoder: maps the list of texts of a split to a numeric array ``[N, ...]``.
      strict: raise on the first missing/unreadable image instead of dropping it.
      progress: show tqdm bars.

    Returns:
      :class:`DatasetSplits` with ``image`` and ``text`` inputs, 2 classes.
    """
    root = require_path(root, "Hateful Memes root folder", LAYOUT)
    if files is None:
        phase2 = all((root / f).exists() for f in ("dev_seen.jsonl", "test_seen.jsonl"))
        files = ("train.jsonl", "dev_seen.jsonl", "test_seen.jsonl") if phase2 else \
            ("train.jsonl", "dev.jsonl", "test.jsonl")
    if len(files) != 3:
        raise ValueError(f"files must name (train, val, test) jsonl files, got {files}")
    return DatasetSplits(*(_load_split(root, f, image_size, text_encoder, strict, progress) for f in files))
