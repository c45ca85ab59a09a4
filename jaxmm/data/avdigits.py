"""avdigits: real spoken digits (FSDD) paired by label with real handwritten digits.

* ``audio``: a Free Spoken Digit Dataset recording (8 kHz; CC BY-SA 4.0, read
  from a folder, never copied into the repo) as a ``[32, 32, 1]`` float32 log
  spectrogram: peak-normalised waveform, centred STFT (n_fft 256, hop 64, Hann),
  magnitudes area-pooled to 32 frequency bands x 32 time bins spanning the whole
  utterance, ``log(m + 1e-3)``, then standardised with the train split's scalar
  mean and std.
* ``image``: one of scikit-learn's bundled 8x8 ``load_digits`` images with the
  same label, ``[8, 8, 1]`` float32 in ``[0, 1]``.

Splits are speaker-independent: by default test = lucas + theo, validation =
nicolas, train = george + jackson + yweweler (1,500 / 500 / 1,000 examples).
The digit images are split per class into disjoint train/val/test pools in the
same proportions, and every recording is paired with an image of its label from
its split's pool (each pool permuted with the seed and used round-robin).
``meta``: ``speaker`` (index into :data:`SPEAKERS`), ``utterance`` (FSDD index
0-49) and ``image_index`` (row of ``load_digits``).

The sequence variant (``sequence=True``) keeps time: ``audio`` is ``[T_max, 32]``
float32, one step per 32 ms (centred STFT, n_fft 256, hop 256, Hann; magnitudes
area-pooled to 32 bands, ``log(m + 1e-3)``, each band standardised with the train
split's mean and std over real steps), the first ``T_max = max_steps`` steps of the
recording (32 steps cover 99% of FSDD), LEFT zero-padded as MultiBench's sequences:
the content starts at the first non-zero step, and a content step whose features
would all be exactly 0 is set to :data:`NUDGE` so the start rule finds it;
``meta['length/audio']`` holds the real lengths. ``image`` is the digit as a
sequence of its 8 rows, ``[8, 8]`` (fixed length, no padding).

Options for every variant: ``target="value"`` makes the task regression with the
digit's value as a float32 target (``num_classes`` 1); ``noise_modality=True`` adds a
third modality ``noise`` that carries only noise, independent of the label (BTW's
added modality that brings more noise than information): standard normal values of
the audio's shape; in the sequence variant a left-padded sequence whose lengths are
drawn (with replacement) from the train split's audio lengths (``meta['length/noise']``).
The noise follows the seed alone, from a stream of its own (the pairing is unchanged).

The recordings are looked for in ``fsdd_dir``, else ``$JAXMM_FSDD_DIR``, else
``../shared/data/fsdd/recordings`` beside the repository checkout (a folder named
explicitly that holds no recordings is an error, not a fall-back).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.datasets import load_digits

from jaxmm.data import cache
from jaxmm.data.readers import audio
from jaxmm.data.readers.validate import DataFormatError, DropLog, logger
from jaxmm.data.types import ArrayDataset, DatasetSplits

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TEST_SPEAKERS = ("lucas", "theo")
VAL_SPEAKERS = ("nicolas",)
ENV_VAR = "JAXMM_FSDD_DIR"
SAMPLE_RATE = 8000
N_FFT, HOP = 256, 64
FREQ_BINS, TIME_BINS = 32, 32
LOG_EPS = 1e-3
SEQUENCE_HOP = 256
MAX_STEPS = 32
NUDGE = 1e-6
"""The value a content step takes when every one of its features would be exactly 0."""
TARGETS = ("class", "value")
SPLITS = ("train", "val", "test")
_FILE = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
_FREQ_POOL = audio.area_pool_matrix(N_FFT // 2 + 1, FREQ_BINS)


def candidate_dirs(fsdd_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where recordings are looked for, in order (argument, env var, beside the checkout)."""
    dirs = [Path(fsdd_dir)] if fsdd_dir is not None else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    repo_root = Path(__file__).resolve().parents[2]
    dirs.append(repo_root.parent / "shared" / "data" / "fsdd" / "recordings")
    return dirs


def find_recordings(fsdd_dir: str | os.PathLike | None = None) -> Path:
    """The first candidate folder holding FSDD wavs (a folder or its ``recordings/`` child).

    A folder named explicitly (``fsdd_dir``, else ``$JAXMM_FSDD_DIR``) is the only place looked at:
    a wrong one is an error, never a silent fall-back to the shared copy.

    Raises:
      FileNotFoundError: one line naming the places looked at and how to point elsewhere; for a
        ``$JAXMM_FSDD_DIR`` that does not exist or holds no recordings, naming the variable.
    """
    env = os.environ.get(ENV_VAR)
    if fsdd_dir is None and env:
        folder = Path(env)
        if not folder.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env} does not exist (or is not a folder); point it at the "
                                    "'recordings' folder of a Free Spoken Digit Dataset copy, or unset it")
        for candidate in (folder, folder / "recordings"):
            if candidate.is_dir() and any(_FILE.match(p.name) for p in candidate.glob("*.wav")):
                return candidate
        raise FileNotFoundError(f"{ENV_VAR}={env} holds no FSDD recordings (<digit>_<speaker>_<index>.wav, e.g. "
                                "7_theo_12.wav), nor does its recordings/ folder; point it at the 'recordings' "
                                "folder of a Free Spoken Digit Dataset copy, or unset it")
    looked = []
    for folder in candidate_dirs(fsdd_dir):
        for candidate in (folder, folder / "recordings"):
            looked.append(candidate)
            if candidate.is_dir() and any(_FILE.match(p.name) for p in candidate.glob("*.wav")):
                return candidate
        if fsdd_dir is not None and folder == Path(fsdd_dir):
            break
    raise FileNotFoundError(
        "FSDD recordings (<digit>_<speaker>_<index>.wav, e.g. 7_theo_12.wav) not found in "
        + ", ".join(map(str, looked))
        + f"; pass fsdd_dir=<folder> (jaxmm: --data-dir), or set {ENV_VAR}, to the 'recordings' folder of a "
          "Free Spoken Digit Dataset copy (the project keeps one in ../shared/data/fsdd/recordings beside the "
          "checkout)")


def audio_features(samples: np.ndarray, rate: int) -> np.ndarray:
    """The ``[32, 32]`` pooled log spectrogram of one recording (before standardisation)."""
    x = audio.resample(samples, rate, SAMPLE_RATE)
    x = x / max(float(np.abs(x).max()), 1e-8)
    if len(x) < N_FFT // 2 + 1:
        x = np.pad(x, (0, N_FFT // 2 + 1 - len(x)))
    mag = np.abs(audio.stft(x, N_FFT, HOP))
    pooled = _FREQ_POOL @ mag @ audio.area_pool_matrix(mag.shape[1], TIME_BINS).T
    return np.log(pooled + LOG_EPS).astype(np.float32)


def sequence_features(samples: np.ndarray, rate: int, max_steps: int = MAX_STEPS) -> np.ndarray:
    """The ``[L, 32]`` log spectrogram sequence of one recording, ``L <= max_steps`` (before standardisation)."""
    x = audio.resample(samples, rate, SAMPLE_RATE)
    x = x / max(float(np.abs(x).max()), 1e-8)
    if len(x) < N_FFT // 2 + 1:
        x = np.pad(x, (0, N_FFT // 2 + 1 - len(x)))
    mag = np.abs(audio.stft(x, N_FFT, SEQUENCE_HOP))[:, :max_steps]
    return np.log(_FREQ_POOL @ mag + LOG_EPS).T.astype(np.float32)


def left_pad(sequences: Sequence[np.ndarray], steps: int) -> np.ndarray:
    """``[N, steps, F]`` float32: each ``[L_i, F]`` sequence at the end, zeros before it (MultiBench's layout).

    A content step whose features are all exactly 0 becomes :data:`NUDGE`, so every content step
    is non-zero and the start rule (first non-zero step) recovers the length.
    """
    out = np.zeros((len(sequences), steps, sequences[0].shape[-1]), np.float32)
    for i, seq in enumerate(sequences):
        seq = np.where(np.all(seq == 0, axis=-1, keepdims=True), np.float32(NUDGE), seq)
        out[i, steps - len(seq):] = seq
    return out


def _standardised_audio(rows: dict, config: dict) -> dict[str, np.ndarray]:
    """Per split, the standardised audio features: ``[N, 32, 32]`` (scalar train mean and std) or, for the
    sequence variant, ``[N, T_max, 32]`` left-padded (per-band train mean and std over real steps)."""
    if not config.get("max_steps"):
        train = np.stack(rows["train"]["audio"])
        mean, std = float(np.mean(train)), float(np.std(train))
        return {s: (np.stack(rows[s]["audio"]) - mean) / std for s in SPLITS}
    steps = np.concatenate(rows["train"]["audio"])
    mean, std = steps.mean(0), steps.std(0)
    return {s: left_pad([(f - mean) / std for f in rows[s]["audio"]], config["max_steps"]) for s in SPLITS}


def _build(config: dict, show_progress: bool) -> dict[str, np.ndarray]:
    """Reads, featurises, splits and pairs everything; returns flat ``<split>/<field>`` arrays."""
    folder = Path(config["recordings"])
    split_of = {s: "test" for s in config["test_speakers"]} | {s: "val" for s in config["val_speakers"]}
    logs = {s: DropLog(f"avdigits/{s}", "<digit>_<speaker>_<index>.wav, 8 kHz mono") for s in SPLITS}
    rows = {s: {"audio": [], "label": [], "speaker": [], "utterance": []} for s in SPLITS}
    unrecognised = []
    for path in cache.progress(sorted(folder.glob("*.wav")), show_progress, desc="avdigits"):
        m = _FILE.match(path.name)
        if not m or m.group(2) not in SPEAKERS:
            unrecognised.append(path.name)
            continue
        split = split_of.get(m.group(2), "train")
        try:
            rate, samples = audio.read_wav(path)
        except DataFormatError as e:
            logs[split].drop("bad_audio", path, str(e))
            continue
        row = rows[split]
        row["audio"].append(sequence_features(samples, rate, config["max_steps"]) if config.get("max_steps")
                            else audio_features(samples, rate))
        row["label"].append(int(m.group(1)))
        row["speaker"].append(SPEAKERS.index(m.group(2)))
        row["utterance"].append(int(m.group(3)))
    if unrecognised:
        logger.warning("avdigits: ignored %d files not named <digit>_<speaker>_<index>.wav with a known "
                       "speaker, e.g. %s", len(unrecognised), unrecognised[0])
    for split in SPLITS:
        if not rows[split]["label"]:
            raise DataFormatError(f"avdigits: no usable recordings for the {split} split in {folder} "
                                  f"(dropped: {logs[split].counts or 'none'})")
    standardised = _standardised_audio(rows, config)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    sizes = np.array([len(rows[s]["label"]) for s in SPLITS], np.float64)
    rng = np.random.default_rng(config["seed"])
    pools = {s: [] for s in SPLITS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == c))
        cuts = np.round(np.cumsum(sizes / sizes.sum())[:2] * len(idx)).astype(int)
        for split, chunk in zip(SPLITS, np.split(idx, cuts)):
            pools[split].append(chunk)
    out = {}
    for split in SPLITS:
        row = rows[split]
        label = np.asarray(row["label"], np.int32)
        image_index = np.empty(len(label), np.int32)
        for c in range(10):
            where = np.flatnonzero(label == c)
            pool = pools[split][c]
            image_index[where] = pool[np.arange(len(where)) % len(pool)]
        feats = standardised[split]
        image = images[image_index]
        if config["audio_noise_std"]:
            noise = rng.normal(0.0, config["audio_noise_std"], feats.shape)
            feats = feats + (noise * np.any(feats != 0, axis=-1, keepdims=True) if config.get("max_steps") else noise)
        if config["image_noise_std"]:
            image = image + rng.normal(0.0, config["image_noise_std"], image.shape)
        if config.get("max_steps"):
            out[f"{split}/length/audio"] = np.asarray([len(f) for f in row["audio"]], np.int32)
        else:
            feats, image = feats[..., None], image[..., None]
        out |= {f"{split}/audio": feats.astype(np.float32),
                f"{split}/image": image.astype(np.float32), f"{split}/label": label,
                f"{split}/image_index": image_index,
                f"{split}/speaker": np.asarray(row["speaker"], np.int32),
                f"{split}/utterance": np.asarray(row["utterance"], np.int32)}
        out |= {f"{split}/dropped/{r}": np.asarray(n) for r, n in logs[split].summary().items()}
    return out


def load_avdigits(fsdd_dir: str | os.PathLike | None = None, *, test_speakers: Sequence[str] = TEST_SPEAKERS,
                  val_speakers: Sequence[str] = VAL_SPEAKERS, seed: int = 0, image_noise_std: float = 0.0,
                  audio_noise_std: float = 0.0, sequence: bool = False, max_steps: int = MAX_STEPS,
                  target: str = "class", noise_modality: bool = False, cache_dir: str | os.PathLike | None = None,
                  progress: bool = False) -> DatasetSplits:
    """Builds the avdigits audio-visual dataset (modalities ``audio`` and ``image``, optionally ``noise``).

    Args:
      fsdd_dir: folder of FSDD wavs (or its parent); default ``$JAXMM_FSDD_DIR``, then
        ``../shared/data/fsdd/recordings`` beside the checkout.
      test_speakers: speakers held out for test.
      val_speakers: speakers held out for validation; all others train.
      seed: image pairing (and noise) seed.
      image_noise_std: std of Gaussian noise added to images (weakens the image modality).
      audio_noise_std: std of Gaussian noise added to standardised audio features (real steps only).
      sequence: the sequence variant (module docstring): left-padded spectrogram steps and image rows.
      max_steps: the sequence variant's ``T_max`` (longer recordings keep their first ``max_steps`` steps).
      target: ``"class"`` (10-class classification) or ``"value"`` (regression on the digit's value).
      noise_modality: add the label-independent ``noise`` modality.
      cache_dir: cache the built arrays there (see :func:`jaxmm.data.cache.cached`); ``None``: no cache.
      progress: show a tqdm bar while reading recordings.

    Returns:
      :class:`DatasetSplits`; ``audio [N, 32, 32, 1]``, ``image [N, 8, 8, 1]`` (sequence variant:
      ``audio [N, max_steps, 32]``, ``image [N, 8, 8]``, ``meta['length/audio']``).

    Raises:
      FileNotFoundError: when no recordings are found (the message says where it looked).
      ValueError: for unknown or overlapping speakers, no speaker left for training, an unknown
        ``target`` or a ``max_steps`` below 1.
    """
    test_speakers, val_speakers = tuple(test_speakers), tuple(val_speakers)
    unknown = sorted(set(test_speakers + val_speakers) - set(SPEAKERS))
    if unknown:
        raise ValueError(f"unknown FSDD speakers {unknown}; known: {SPEAKERS}")
    if set(test_speakers) & set(val_speakers) or not test_speakers or not val_speakers:
        raise ValueError(f"test {test_speakers} and val {val_speakers} speakers must be non-empty and disjoint")
    if not set(SPEAKERS) - set(test_speakers) - set(val_speakers):
        raise ValueError("no speaker left for training")
    if target not in TARGETS:
        raise ValueError(f"avdigits: unknown target {target!r}; choose 'class' (the digit as a class) or 'value' "
                         "(regression on the digit's value)")
    if sequence and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"avdigits: max_steps must be a positive int (steps of 32 ms), got {max_steps!r}")
    config = {"recordings": str(find_recordings(fsdd_dir)), "test_speakers": sorted(test_speakers),
              "val_speakers": sorted(val_speakers), "seed": seed, "image_noise_std": image_noise_std,
              "audio_noise_std": audio_noise_std, "features": [SAMPLE_RATE, N_FFT, HOP, FREQ_BINS, TIME_BINS,
                                                                LOG_EPS]}
    if sequence:  # a key of its own, so the caches of the default variant keep their names
        config |= {"max_steps": max_steps, "features": [SAMPLE_RATE, N_FFT, SEQUENCE_HOP, FREQ_BINS, LOG_EPS, NUDGE]}
    arrays = cache.cached(_build, config, cache_dir, name="avdigits", show_progress=progress,
                          sources=[config["recordings"]])
    noise_rng = np.random.default_rng([seed, 1])  # a stream of its own: the pairing stays as without noise
    train_lengths = arrays.get("train/length/audio")
    datasets = []
    for split in SPLITS:
        prefix = f"{split}/dropped/"
        inputs = {"audio": arrays[f"{split}/audio"], "image": arrays[f"{split}/image"]}
        meta = {k: arrays[f"{split}/{k}"] for k in ("speaker", "utterance", "image_index", "length/audio")
                if f"{split}/{k}" in arrays}
        if noise_modality:
            inputs["noise"], lengths = noise_like(inputs["audio"], train_lengths, noise_rng)
            if lengths is not None:
                meta["length/noise"] = lengths
        digit = arrays[f"{split}/label"]
        regression = target == "value"
        datasets.append(ArrayDataset(
            inputs=inputs, label=digit.astype(np.float32) if regression else digit,
            num_classes=1 if regression else 10, meta=meta, name=f"avdigits/{split}",
            class_names=None if regression else tuple(str(d) for d in range(10)),
            dropped={k[len(prefix):]: int(v) for k, v in arrays.items() if k.startswith(prefix)},
            task="regression" if regression else "classification"))
    return DatasetSplits(*datasets)


def noise_like(like: np.ndarray, train_lengths: np.ndarray | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """A label-independent noise modality shaped as ``like``, and its lengths.

    Args:
      like: ``[N, ...]`` the split's audio.
      train_lengths: the train split's audio lengths for a left-padded ``[N, T_max, F]`` sequence
        (each noise length is drawn from them with replacement); ``None``: dense noise, no lengths.
      rng: the noise stream.

    Returns:
      ``(noise, lengths)``: standard normal float32 values (left-padded, real steps non-zero, in the
      sequence case) and ``[N]`` int32 lengths (``None`` for dense noise).
    """
    if train_lengths is None:
        return rng.standard_normal(like.shape, np.float32), None
    n, steps, width = like.shape
    lengths = rng.choice(train_lengths, n).astype(np.int32)
    return left_pad([rng.standard_normal((int(t), width), np.float32) for t in lengths], steps), lengths
