"""CREMA-D audio-visual emotion clips, as the OGM-GE code reads them.

Layout read (nothing is downloaded)::

    <root>/AudioWAV/<name>.wav               16 kHz mono, name = Actor_Sentence_Emotion_Level
    <root>/Image-01-FPS/<name>/00001.jpg     frames pre-extracted at 1 fps (folder name configurable)
    <root>/VideoFlash/<name>.flv             only with frames_source="flv" (needs the `video` extra)
    <split_dir>/train.csv, test.csv          OGM-GE splits, lines "1001_DFA_ANG_XX,ANG" (BOM/CRLF ok)

Inputs: ``audio`` float32 ``[N, 257, 188, 1]`` (OGM-GE log-STFT, see
:func:`~jaxmm.data.readers.audio.ogm_audio_features`) and ``visual`` uint8
``[N, T, S, S, 3]`` frames resized to ``S x S``; the trainer crops and flips them on the device
(:mod:`jaxmm.data.augment`, ``train.augment_frames``) and normalises them in the model.
``meta['actor']`` holds the actor id (1001-1091).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from jaxmm.data.readers import audio, frames
from jaxmm.data.readers.validate import (DataFormatError, DropLog, check_nonempty, logger, require_path,
                                         stack_or_empty)
from jaxmm.data.types import ArrayDataset, DatasetSplits

LABEL_ORDERS = {
    "ogm": ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG"),
    "tfds": ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS"),
}
EMOTIONS = frozenset(LABEL_ORDERS["ogm"])
LEVELS = ("LO", "MD", "HI", "XX")
# Listed in the OGM-GE csv files but absent from the public release (TFDS skips them too).
MISSING_IN_RELEASE = ("1040_ITH_SAD_XX", "1006_TIE_NEU_XX", "1013_WSI_DIS_XX", "1017_IWW_FEA_XX")
AUDIO_SHAPE = (257, 188, 1)
TFDS_FRACTIONS = (0.7, 0.1, 0.2)
LAYOUT = """  <root>/AudioWAV/<name>.wav            (name = ActorID_Sentence_Emotion_Level, e.g. 1001_DFA_ANG_XX)
  <root>/<frames_dir>/<name>/00001.jpg  (frames_dir default Image-01-FPS; or <root>/VideoFlash/<name>.flv)
  <split_dir>/train.csv, test.csv       (OGM-GE: one '<name>,<EMOTION>' per line; BOM and CRLF allowed)"""

_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


@dataclasses.dataclass(frozen=True)
class Clip:
    """The fields of a CREMA-D clip name such as ``1001_DFA_ANG_XX``."""

    name: str
    actor: int
    sentence: str
    emotion: str
    level: str


def parse_name(name: str) -> Clip:
    """Parses ``ActorID_Sentence_Emotion_Level``.

    Raises:
      DataFormatError: if the name does not follow the pattern or names an
        unknown emotion or level.
    """
    m = _NAME.match(name)
    if not m or m.group(3) not in EMOTIONS or m.group(4) not in LEVELS:
        raise DataFormatError(
            f"not a CREMA-D clip name: {name!r} (expected ActorID_Sentence_Emotion_Level with emotion in "
            f"{sorted(EMOTIONS)} and level in {LEVELS}, e.g. 1001_DFA_ANG_XX)")
    return Clip(name, int(m.group(1)), m.group(2), m.group(3), m.group(4))


def read_split_csv(path: str | os.PathLike) -> list[Clip]:
    """Reads an OGM-GE split file (``train.csv``/``test.csv``/``data.csv``).

    Lines are ``<name>,<EMOTION>`` with no header; a UTF-8 BOM, CRLF line ends and
    blank lines are tolerated.

    Raises:
      FileNotFoundError: if the file is missing.
      DataFormatError: naming the file and line for a malformed line, a label
        outside the six emotions, or a label that contradicts the clip name.
    """
    path = require_path(path, "CREMA-D split file", LAYOUT)
    clips = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        where = f"{path}:{lineno}"
        if len(parts) != 2:
            raise DataFormatError(f"{where}: expected '<name>,<EMOTION>', got {line!r}")
        if parts[1] not in EMOTIONS:
            raise DataFormatError(f"{where}: label {parts[1]!r} is not one of {sorted(EMOTIONS)}")
        try:
            clip = parse_name(parts[0])
        except DataFormatError as e:
            raise DataFormatError(f"{where}: {e}") from None
        if clip.emotion != parts[1]:
            raise DataFormatError(f"{where}: label {parts[1]} contradicts the clip name {clip.name}")
        clips.append(clip)
    if not clips:
        raise DataFormatError(f"{path}: split file lists no clips\nExpected layout:\n{LAYOUT}")
    return clips


def speaker_split(actors: Iterable, fractions: Sequence[float] = TFDS_FRACTIONS, seed: int = 0) -> list[set[str]]:
    """Assigns whole actors to splits the way TFDS ``crema_d`` does.

    Actor ids (as strings) are sorted, shuffled with ``np.random.RandomState(seed)``
    and cut at ``int(cumulative_fraction * n_actors)``; the last split takes the
    rest. With the 91 CREMA-D actors and the default 70/10/20 at seed 0 this gives
    63/9/19 actors, TFDS's 5,144/738/1,556 clips.

    Args:
      actors: actor ids (any iterable; duplicates ignored).
      fractions: split fractions summing to 1.
      seed: shuffle seed (TFDS uses 0).

    Returns:
      One set of actor-id strings per fraction.
    """
    if abs(sum(fractions) - 1.0) > 1e-8:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    groups = sorted({str(a) for a in actors})
    if len(groups) < len(fractions):
        raise ValueError(f"{len(groups)} actors cannot fill {len(fractions)} splits")
    np.random.RandomState(seed).shuffle(groups)
    bounds, total = [], 0.0
    for p in fractions:
        start = int(total * len(groups))
        total += p
        bounds.append((start, int(total * len(groups))))
    bounds[-1] = (bounds[-1][0], len(groups))
    return [set(groups[a:b]) for a, b in bounds]


def decode_video_frames(path: str | os.PathLike, fps: float = 1.0) -> list[np.ndarray]:
    """Decodes a video (e.g. ``VideoFlash/<name>.flv``) to RGB frames at ``fps``.

    Keeps the first decoded frame at or after each multiple of ``1 / fps``
    seconds. Needs the optional ``av`` package (``pip install 'jaxmm[video]'``).

    Returns:
      list of ``uint8 [H, W, 3]`` frames.

    Raises:
      ImportError: if ``av`` is not installed, saying which extra provides it.
      FileNotFoundError: if the file is missing.
      DataFormatError: if it cannot be decoded or holds no frames.
    """
    try:
        import av
    except ImportError as e:
        raise ImportError(
            "decoding CREMA-D .flv videos needs the optional 'av' package: install the 'video' extra "
            "(pip install 'jaxmm[video]') or pre-extract frames to <root>/Image-01-FPS/<name>/NNNNN.jpg "
            "and use frames_source='jpg'") from e
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    out, next_time = [], 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 25)
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else i / rate
                if t + 1e-6 >= next_time:
                    out.append(frame.to_ndarray(format="rgb24"))
                    next_time += 1.0 / fps
    except Exception as e:  # av.error.FFmpegError and friends
        raise DataFormatError(f"cannot decode video {path}: {e}") from e
    if not out:
        raise DataFormatError(f"video {path} holds no frames")
    return out


@dataclasses.dataclass(frozen=True)
class _Options:
    root: Path
    audio_dir: str
    frames_dir: str
    frames_source: str
    num_frames: int
    image_size: int
    label_order: tuple[str, ...]
    strict: bool
    progress: bool


def _load_frames(clip: Clip, opts: _Options, mode: str, rng: np.random.Generator, log: DropLog):
    """The clip's selected frames ``uint8 [T, S, S, 3]``, or ``None`` after logging a drop."""
    if opts.frames_source == "flv":
        path = opts.root / "VideoFlash" / f"{clip.name}.flv"
        if not path.exists():
            log.drop("missing_video", path)
            return None
        try:
            decoded = decode_video_frames(path)
        except DataFormatError as e:
            log.drop("bad_video", path, str(e))
            return None
        idx = frames.choose_frames(len(decoded), opts.num_frames, mode, rng)
        return np.stack([frames.resize(decoded[i], opts.image_size) for i in idx])
    folder = opts.root / opts.frames_dir / clip.name
    files = frames.list_frames(folder) if folder.is_dir() else []
    if not files:
        log.drop("missing_frames", folder, "no folder" if not folder.is_dir() else "no .jpg frames")
        return None
    idx = frames.choose_frames(len(files), opts.num_frames, mode, rng)
    try:
        return np.stack([frames.read_image(files[i], opts.image_size) for i in idx])
    except DataFormatError as e:
        log.drop("bad_image", folder, str(e))
        return None


def _load_split(clips: Sequence[Clip], opts: _Options, name: str, frame_mode: str, seed: int) -> ArrayDataset:
    """Loads the audio features and frames of ``clips`` into one :class:`ArrayDataset`."""
    log = DropLog(f"crema_d/{name}", LAYOUT, opts.strict)
    rng = np.random.default_rng(seed)
    specs, videos, labels, actors = [], [], [], []
    for clip in tqdm(clips, desc=f"crema_d/{name}", disable=not opts.progress):
        wav = opts.root / opts.audio_dir / f"{clip.name}.wav"
        if not wav.exists():
            log.drop("missing_audio", wav, "known to be absent from the release" if clip.name in MISSING_IN_RELEASE
                     else "")
            continue
        video = _load_frames(clip, opts, frame_mode, rng, log)
        if video is None:
            continue
        try:
            rate, samples = audio.read_wav(wav)
        except DataFormatError as e:
            log.drop("bad_audio", wav, str(e))
            continue
        specs.append(audio.ogm_audio_features(samples, rate)[..., None])
        videos.append(video)
        labels.append(opts.label_order.index(clip.emotion))
        actors.append(clip.actor)
    dropped = log.summary()
    check_nonempty(len(labels), len(clips), log.name, LAYOUT, dropped)
    size = opts.image_size
    return ArrayDataset(
        inputs={"audio": stack_or_empty(specs, AUDIO_SHAPE, np.float32),
                "visual": stack_or_empty(videos, (opts.num_frames, size, size, 3), np.uint8)},
        label=np.asarray(labels, np.int32),
        num_classes=len(opts.label_order),
        meta={"actor": np.asarray(actors, np.int32)},
        name=log.name,
        class_names=opts.label_order,
        dropped=dropped,
    )


def list_clips(root: str | os.PathLike, audio_dir: str = "AudioWAV") -> list[Clip]:
    """All clips with a wav in ``<root>/<audio_dir>``, sorted by name.

    Files whose names are not CREMA-D clip names are skipped with a warning.
    """
    folder = require_path(Path(root) / audio_dir, "CREMA-D audio folder", LAYOUT)
    clips, skipped = [], []
    for path in sorted(folder.glob("*.wav")):
        try:
            clips.append(parse_name(path.stem))
        except DataFormatError:
            skipped.append(path.name)
    if skipped:
        logger.warning("crema_d: ignored %d wav files with unrecognised names in %s, e.g. %s",
                       len(skipped), folder, skipped[0])
    return clips


def load_crema_d(root: str | os.PathLike, *, split: str = "ogm_csv", split_dir: str | os.PathLike | None = None,
                 label_order: str = "ogm", audio_dir: str = "AudioWAV", frames_dir: str = "Image-01-FPS",
                 frames_source: str = "jpg", num_frames: int = 1, image_size: int = 224,
                 train_frames: str = "random", val_fraction: float = 0.1, split_seed: int = 0, seed: int = 0,
                 strict: bool = False, progress: bool = False) -> DatasetSplits:
    """Loads CREMA-D audio features and video frames into train/val/test splits.

    Args:
      root: CREMA-D folder (see the module docstring for the layout).
      split: ``"ogm_csv"`` (OGM-GE's clip-level ``train.csv``/``test.csv``; val is
        ``val_fraction`` of the train rows, drawn with ``seed``) or
        ``"speaker_independent"`` (all clips in ``AudioWAV``, split 70/10/20 by
        actor exactly as TFDS ``crema_d`` for ``split_seed=0``).
      split_dir: folder of the csv files (default ``root``).
      label_order: ``"ogm"`` (NEU HAP SAD FEA DIS ANG) or ``"tfds"`` (NEU HAP SAD ANG FEA DIS).
      audio_dir: wav folder name under ``root``.
      frames_dir: frame folder name under ``root``.
      frames_source: ``"jpg"`` (pre-extracted frames) or ``"flv"`` (decode
        ``VideoFlash/<name>.flv`` at 1 fps; needs the ``video`` extra).
      num_frames: frames per clip T (OGM-GE default 1; CREMA-D-Irony uses 3).
      image_size: stored frame side S (frames are resized to ``S x S``).
      train_frames: frame choice for the train split: ``"random"`` (T random frames,
        drawn once at load time with ``seed``) or ``"first"``; val/test use the first T.
      val_fraction: OGM-GE only: fraction of train rows held out for validation (0: empty val).
      split_seed: speaker split only: the actor shuffle seed (TFDS uses 0; use 0/1/2 as folds).
      seed: seed for the val carve-out and random train frames.
      strict: raise on the first missing/unreadable file instead of dropping the clip.
      progress: show a tqdm bar per split.

    Returns:
      :class:`DatasetSplits` with ``audio`` and ``visual`` inputs, 6 classes.

    Raises:
      FileNotFoundError: missing root folders or split files (or any clip file when strict).
      DataFormatError: malformed split files, or a split whose clips all failed to load.
    """
    if label_order not in LABEL_ORDERS:
        raise ValueError(f"label_order must be one of {sorted(LABEL_ORDERS)}, got {label_order!r}")
    if frames_source not in ("jpg", "flv"):
        raise ValueError(f"frames_source must be 'jpg' or 'flv', got {frames_source!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = require_path(root, "CREMA-D root folder", LAYOUT)
    require_path(root / audio_dir, "CREMA-D audio folder", LAYOUT)
    if frames_source == "jpg":
        require_path(root / frames_dir, "CREMA-D frame folder", LAYOUT)
    opts = _Options(Path(root), audio_dir, frames_dir, frames_source, num_frames, image_size,
                    LABEL_ORDERS[label_order], strict, progress)
    if split == "ogm_csv":
        split_dir = Path(split_dir) if split_dir is not None else opts.root
        train = read_split_csv(split_dir / "train.csv")
        test = read_split_csv(split_dir / "test.csv")
        order = np.random.default_rng(seed).permutation(len(train))
        n_val = int(round(val_fraction * len(train)))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    elif split == "speaker_independent":
        clips = list_clips(opts.root, audio_dir)
        parts = speaker_split({c.actor for c in clips}, TFDS_FRACTIONS, split_seed)
        train, val, test = ([c for c in clips if str(c.actor) in part] for part in parts)
    else:
        raise ValueError(f"split must be 'ogm_csv' or 'speaker_independent', got {split!r}")
    return DatasetSplits(
        train=_load_split(train, opts, "train", train_frames, seed),
        val=_load_split(val, opts, "val", "first", seed),
        test=_load_split(test, opts, "test", "first", seed),
    )
