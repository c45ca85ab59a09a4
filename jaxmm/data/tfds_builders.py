"""tensorflow-datasets builders for CREMA-D and avdigits (optional extra ``tfds``).

The builders read files the user already has (the tfds *manual* directory),
through jaxmm's own readers, and write ``array_record`` shards; TensorFlow is
not needed. Prepared datasets are then readable with ``tfds.data_source``::

    from jaxmm.data import tfds_builders
    tfds_builders.prepare("avdigits", data_dir="~/tfds", manual_dir="../shared/data/fsdd")
    source = tfds.data_source("jaxmm_avdigits", data_dir="~/tfds")   # random access, no TF
    splits = tfds_builders.load_splits("avdigits", data_dir="~/tfds")  # back to DatasetSplits

Builder names are ``jaxmm_avdigits`` and ``jaxmm_crema_d`` (configs ``ogm_csv``,
the OGM-GE csv split with one frame, and ``speaker_independent``, the by-actor
split with three frames, as CREMA-D-Irony uses). Each example holds the
modality arrays, ``label`` and ``index`` (its row in jaxmm's split); the
readers' other per-example metadata is not stored.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping

import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What a builder needs to know before reading any file."""

    loader: Callable[..., DatasetSplits]
    inputs: Mapping[str, tuple[int, Any]]  # modality -> (rank without the batch axis, dtype)
    class_names: tuple[str, ...]
    configs: Mapping[str, Mapping[str, Any]]  # config name -> loader options
    instructions: str


def _avdigits_loader(manual_dir, **options) -> DatasetSplits:
    from jaxmm.data.avdigits import load_avdigits

    return load_avdigits(manual_dir, **options)


def _crema_d_loader(manual_dir, **options) -> DatasetSplits:
    from jaxmm.data.readers.crema_d import load_crema_d

    return load_crema_d(manual_dir, **options)


def _specs() -> dict[str, _Spec]:
    from jaxmm.data.readers.crema_d import LABEL_ORDERS, LAYOUT

    return {
        "avdigits": _Spec(
            _avdigits_loader, {"audio": (3, np.float32), "image": (3, np.float32)},
            tuple(str(d) for d in range(10)), {"default": {}},
            "Put the FSDD recordings (<digit>_<speaker>_<index>.wav, 8 kHz) in the manual directory, "
            "e.g. manual_dir='../shared/data/fsdd/recordings'."),
        "crema_d": _Spec(
            _crema_d_loader, {"audio": (3, np.float32), "visual": (4, np.uint8)}, tuple(LABEL_ORDERS["ogm"]),
            {"ogm_csv": {"split": "ogm_csv", "num_frames": 1},
             "speaker_independent": {"split": "speaker_independent", "num_frames": 3}},
            "The manual directory is the CREMA-D folder:\n" + LAYOUT),
    }


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("the tfds builders need tensorflow-datasets and array_record: "
                          "pip install -e '.[tfds]'") from e
    return tfds


def _spec(dataset: str) -> _Spec:
    specs = _specs()
    if dataset not in specs:
        raise ValueError(f"no tfds builder for {dataset!r}; available: {sorted(specs)}")
    return specs[dataset]


@functools.cache
def builder_class(dataset: str):
    """The ``tfds`` builder class of ``dataset`` (``avdigits`` or ``crema_d``), registered as ``jaxmm_<dataset>``."""
    tfds = _tfds()
    spec = _spec(dataset)

    class Config(tfds.core.BuilderConfig):
        """A builder config carrying the jaxmm loader's options."""

        def __init__(self, *, options: Mapping[str, Any], **kwargs):
            super().__init__(**kwargs)
            self.options = dict(options)

    def _info(self):
        features = {m: tfds.features.Tensor(shape=(None,) * rank, dtype=dtype, encoding=tfds.features.Encoding.ZLIB)
                    for m, (rank, dtype) in spec.inputs.items()}
        features |= {"label": tfds.features.ClassLabel(names=spec.class_names), "index": np.int64}
        return tfds.core.DatasetInfo(builder=self, description=f"jaxmm {dataset} (read with jaxmm's reader)",
                                     features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        splits = spec.loader(dl_manager.manual_dir, **self.builder_config.options)
        return {name: _examples(getattr(splits, name), spec) for name in SPLITS}

    attrs = {
        "VERSION": tfds.core.Version("1.0.0"),
        "MANUAL_DOWNLOAD_INSTRUCTIONS": spec.instructions,
        "BUILDER_CONFIGS": [Config(name=n, options=o) for n, o in spec.configs.items()],
        "_info": _info, "_split_generators": _split_generators,
        "_generate_examples": lambda self, data: _examples(data, spec),
        "__module__": __name__,
    }
    return type(f"Jaxmm{''.join(p.title() for p in dataset.split('_'))}", (tfds.core.GeneratorBasedBuilder,), attrs)


def _examples(data: ArrayDataset, spec: _Spec):
    """``(key, example)`` pairs of one split, checking the arrays match the builder's features."""
    for m, (rank, dtype) in spec.inputs.items():
        x = data.inputs[m]
        if x.ndim - 1 != rank or x.dtype != dtype:
            raise ValueError(f"{data.name}: '{m}' is {x.dtype}{list(x.shape)}, the builder expects {rank} "
                             f"axes per example of {np.dtype(dtype)}")
    for i in range(len(data)):
        yield i, {**{m: data.inputs[m][i] for m in spec.inputs}, "label": int(data.label[i]), "index": i}


def prepare(dataset: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike, config: str | None = None):
    """Builds ``jaxmm_<dataset>`` (array_record shards) under ``data_dir`` from the files in ``manual_dir``.

    Args:
      dataset: ``avdigits`` or ``crema_d``.
      data_dir: the tfds data directory to write to.
      manual_dir: the folder of the downloaded files (see each builder's instructions).
      config: builder config name (default: the first, e.g. ``ogm_csv`` for CREMA-D).

    Returns:
      The prepared builder.
    """
    tfds = _tfds()
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"tfds manual directory {manual_dir} does not exist. "
                                f"{_spec(dataset).instructions}")
    builder = _builder(dataset, data_dir, config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder


def load_splits(dataset: str, data_dir: str | os.PathLike, config: str | None = None) -> DatasetSplits:
    """A prepared ``jaxmm_<dataset>`` read back through ``tfds.data_source`` into :class:`DatasetSplits`."""
    spec = _spec(dataset)
    sources = _builder(dataset, data_dir, config).as_data_source()
    out = []
    for name in SPLITS:
        source = sources[name]
        rows = [source[i] for i in range(len(source))]
        rows.sort(key=lambda r: int(r["index"]))
        inputs = {m: np.stack([r[m] for r in rows]) if rows else np.zeros((0,), dtype)
                  for m, (_, dtype) in spec.inputs.items()}
        out.append(ArrayDataset(inputs, np.asarray([r["label"] for r in rows], np.int32), len(spec.class_names),
                                name=f"{dataset}/{name}", class_names=spec.class_names))
    return DatasetSplits(*out)


def _builder(dataset: str, data_dir, config: str | None):
    cls = builder_class(dataset)
    names = [c.name for c in cls.BUILDER_CONFIGS]
    if config is not None and config not in names:
        raise ValueError(f"jaxmm_{dataset} has no config {config!r}; available: {names}")
    return cls(data_dir=os.fspath(data_dir), config=config or names[0], file_format="array_record")
