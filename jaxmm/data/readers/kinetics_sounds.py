"""Kinetics-Sounds in the OGM-GE layouts.

Split lists ``my_train.txt`` / ``my_test.txt``: one ``<youtube_id>_<start>_<end>,10,<class_idx>``
per line, ``class_idx`` into the alphabetically sorted class list (31 classes by
default, 32 with ``strumming guitar``). Two media layouts:

* ``"pkl"``: ``<root>/visual/<id>/*.jpg`` and ``<root>/audio_spec/<id>.pkl`` (a pickled
  2-D spectrogram array, stored as ``[F, T]``);
* ``"wav"``: ``<root>/<train|test>/<id>/*.jpg`` plus ``<id>.wav`` in the same folder;
  audio becomes the AST-style Kaldi fbank (128 mel bins, 10 ms hop) cut or
  zero-padded to ``audio_frames`` frames and normalised ``(x - mean) / (2 std)``
  with the OGM-GE constants, stored ``[1024, 128]``.

Inputs: ``audio`` float32 ``[N, F, T, 1]`` and ``visual`` uint8 ``[N, T, S, S, 3]``
(eval: T evenly spaced frames; train: T random frames drawn at load time).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxmm.data.readers import audio, frames
from jaxmm.data.readers.validate import DataFormatError, DropLog, check_nonempty, require_path, stack_or_empty
from jaxmm.data.types import ArrayDataset, DatasetSplits

CLASSES_31 = tuple(sorted([
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball", "laughing",
    "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar", "playing clarinet",
    "playing drums", "playing guitar", "playing harmonica", "playing keyboard", "playing organ",
    "playing piano", "playing saxophone", "playing trombone", "playing trumpet", "playing violin",
    "playing xylophone", "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
]))
CLASSES_32 = tuple(sorted(CLASSES_31 + ("strumming guitar",)))
FBANK_MEAN, FBANK_STD = -4.503877, 5.141276
LAYOUT = """  <root>/my_train.txt, my_test.txt      ('<youtube_id>_<start:06d>_<end:06d>,10,<class_idx>' per line)
  layout 'pkl': <root>/visual/<id>/*.jpg and <root>/audio_spec/<id>.pkl (pickled 2-D spectrogram)
  layout 'wav': <root>/<train|test>/<id>/*.jpg and <root>/<train|test>/<id>/<id>.wav"""


def read_split_list(path: str | os.PathLike, num_classes: int) -> list[tuple[str, int]]:
    """Reads an OGM-GE Kinetics-Sounds list into ``(clip_id, class_idx)`` pairs.

    Raises:
      FileNotFoundError: if the file is missing.
      DataFormatError: naming file and line for a malformed line or a class index
        outside ``[0, num_classes)``.
    """
    path = require_path(path, "Kinetics-Sounds split list", LAYOUT)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(",", 2)
        if len(parts) != 3 or not parts[2].strip().lstrip("-").isdigit():
            raise DataFormatError(f"{path}:{lineno}: expected '<id>,10,<class_idx>', got {line!r}")
        label = int(parts[2])
        if not 0 <= label < num_classes:
            raise DataFormatError(f"{path}:{lineno}: class index {label} outside [0, {num_classes})")
        rows.append((parts[0].strip(), label))
    if not rows:
        raise DataFormatError(f"{path}: split list is empty\nExpected layout:\n{LAYOUT}")
    return rows


def _fit_time(spec: np.ndarray, length: int) -> np.ndarray:
    """Cuts or zero-pads the last axis of ``spec`` to ``length``."""
    if spec.shape[-1] >= length:
        return spec[..., :length]
    return np.pad(spec, [(0, 0)] * (spec.ndim - 1) + [(0, length - spec.shape[-1])])


def _read_audio(path: Path, layout: str, audio_frames: int | None) -> np.ndarray:
    """Audio features ``[F, T]`` of one clip (raises DataFormatError when malformed)."""
    if layout == "pkl":
        try:
            with open(path, "rb") as f:
                spec = np.asarray(pickle.load(f), np.float32)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise DataFormatError(f"unreadable spectrogram pickle {path}: {e}") from e
        if spec.ndim != 2:
            raise DataFormatError(f"spectrogram {path} has shape {spec.shape}, expected 2-D [F, T]")
        return spec if audio_frames is None else _fit_time(spec, audio_frames)
    rate, samples = audio.read_wav(path)
    fbank = audio.kaldi_fbank(samples - samples.mean(), rate)
    fbank = _fit_time(fbank.T, audio_frames or 1024).T
    return (fbank - FBANK_MEAN) / (2 * FBANK_STD)


def _load_split(rows, root: Path, split: str, layout: str, class_names, num_frames: int, image_size: int,
                frame_mode: str, audio_frames: int | None, seed: int, strict: bool, progress: bool,
                empty_audio_shape: tuple[int, ...] = (0, 0, 1)) -> ArrayDataset:
    """Loads the clips of one split list (``empty_audio_shape`` shapes an empty split's audio)."""
    log = DropLog(f"kinetics_sounds/{split}", LAYOUT, strict)
    rng = np.random.default_rng(seed)
    specs, videos, labels, paths = [], [], [], []
    folder = "train" if split in ("train", "val") else "test"
    for clip_id, label in tqdm(rows, desc=log.name, disable=not progress):
        if layout == "pkl":
            frame_dir, audio_path = root / "visual" / clip_id, root / "audio_spec" / f"{clip_id}.pkl"
        else:
            frame_dir = root / folder / clip_id
            audio_path = frame_dir / f"{clip_id}.wav"
        if not audio_path.exists():
            log.drop("missing_audio", audio_path)
            continue
        files = frames.list_frames(frame_dir) if frame_dir.is_dir() else []
        if not files:
            log.drop("missing_frames", frame_dir)
            continue
        try:
            spec = _read_audio(audio_path, layout, audio_frames)
        except (DataFormatError, ValueError) as e:
            log.drop("bad_audio", audio_path, str(e))
            continue
        try:
            idx = frames.choose_frames(len(files), num_frames, frame_mode, rng)
            video = np.stack([frames.read_image(files[i], image_size) for i in idx])
        except DataFormatError as e:
            log.drop("bad_image", frame_dir, str(e))
            continue
        specs.append(spec[..., None])
        videos.append(video)
        labels.append(label)
        paths.append(audio_path)
    if specs:
        shapes = [s.shape for s in specs]
        common = max(set(shapes), key=shapes.count)
        for i in reversed(range(len(specs))):
            if shapes[i] != common:
                log.drop("bad_audio", paths[i], f"spectrogram shape {shapes[i][:2]} differs from the split's "
                                                f"{common[:2]}; set audio_frames to cut/pad the time axis")
                del specs[i], videos[i], labels[i]
    dropped = log.summary()
    check_nonempty(len(labels), len(rows), log.name, LAYOUT, dropped)
    audio_shape = specs[0].shape if specs else empty_audio_shape
    return ArrayDataset(
        inputs={"audio": stack_or_empty(specs, audio_shape, np.float32),
                "visual": stack_or_empty(videos, (num_frames, image_size, image_size, 3), np.uint8)},
        label=np.asarray(labels, np.int32), num_classes=len(class_names), name=log.name,
        class_names=class_names, dropped=dropped)


def load_kinetics_sounds(root: str | os.PathLike, *, num_classes: int = 31, layout: str = "pkl",
                         train_list: str = "my_train.txt", test_list: str = "my_test.txt", num_frames: int = 3,
                         image_size: int = 224, train_frames: str = "random", audio_frames: int | None = None,
                         val_fraction: float = 0.1, seed: int = 0, strict: bool = False,
                         progress: bool = False) -> DatasetSplits:
    """Loads Kinetics-Sounds from OGM-GE-style files.

    Args:
      root: dataset folder (see the module docstring).
      num_classes: 31 (default) or 32 (adds ``strumming guitar``); picks the class list.
      layout: ``"pkl"`` (pickled spectrograms) or ``"wav"`` (Kaldi fbank from wavs).
      train_list: train list file name under ``root``.
      test_list: test list file name under ``root``.
      num_frames: frames per clip T (OGM-GE uses 3).
      image_size: stored frame side.
      train_frames: ``"random"`` or ``"uniform"`` frame choice for train (eval: uniform).
      audio_frames: cut/pad spectrograms to this many time steps (``"wav"`` default 1024;
        ``"pkl"`` default: keep, all files must then share a shape).
      val_fraction: fraction of train rows held out for validation, drawn with ``seed``.
      seed: seed of the val carve-out and of random train frames.
      strict: raise on the first bad clip instead of dropping it.
      progress: show tqdm bars.

    Returns:
      :class:`DatasetSplits` with ``audio`` and ``visual`` inputs.
    """
    class_names = {31: CLASSES_31, 32: CLASSES_32}.get(num_classes)
    if class_names is None:
        raise ValueError(f"num_classes must be 31 or 32, got {num_classes}")
    if layout not in ("pkl", "wav"):
        raise ValueError(f"layout must be 'pkl' or 'wav', got {layout!r}")
    root = require_path(root, "Kinetics-Sounds root folder", LAYOUT)
    train = read_split_list(root / train_list, num_classes)
    test = read_split_list(root / test_list, num_classes)
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(val_fraction * len(train)))
    val = [train[i] for i in sorted(order[:n_val])]
    train = [train[i] for i in sorted(order[n_val:])]
    common = dict(root=root, layout=layout, class_names=class_names, num_frames=num_frames,
                  image_size=image_size, audio_frames=audio_frames, seed=seed, strict=strict, progress=progress)
    train = _load_split(train, split="train", frame_mode=train_frames, **common)
    shape = train.inputs["audio"].shape[1:]
    return DatasetSplits(
        train=train,
        val=_load_split(val, split="val", frame_mode="uniform", empty_audio_shape=shape, **common),
        test=_load_split(test, split="test", frame_mode="uniform", empty_audio_shape=shape, **common),
    )
