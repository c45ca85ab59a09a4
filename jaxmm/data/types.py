"""Containers shared by every dataset, reader and the trainer.

A split is held in host memory as numpy arrays (:class:`ArrayDataset`); the
trainer slices it into :class:`Batch` pytrees of device arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import numpy as np

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")


class Batch(NamedTuple):
    """One mini-batch, a pytree of arrays with a leading batch axis.

    Attributes:
      inputs: modality name -> array ``[B, ...]``.
      label: ``[B]`` int class ids (``[B]`` or ``[B, D]`` floats for regression).
      index: ``[B]`` int position of each example in its split (methods such as
        BTW keep per-example state indexed by it).
      meta: optional per-example extras, e.g. ``source`` (PID source id) or
        ``mask/<modality>`` (oracle corruption masks); may be empty.
    """

    inputs: dict[str, Any]
    label: Any
    index: Any
    meta: dict[str, Any]


@dataclasses.dataclass
class ArrayDataset:
    """One split of a dataset, fully in host memory.

    Attributes:
      inputs: modality name -> ``np.ndarray [N, ...]``.
      label: ``[N]`` int labels in ``[0, num_classes)`` for classification;
        ``[N]`` or ``[N, D]`` float targets for regression.
      num_classes: number of classes (1 for regression / single-logit binary).
      meta: optional per-example extras with leading axis N (see :class:`Batch`);
        empty by default. Nothing here is required: the trainer adds what it
        needs itself (e.g. the ``valid`` mask of padded batches).
      name: human-readable name used in logs.
      class_names: optional label names, index-aligned with the label ids.
      dropped: reason -> count of examples a reader skipped while loading.
      group_names: names of the ids in ``meta['source']`` (e.g. PID sources), if any.
      task: ``"classification"`` (default) or ``"regression"`` (the label is a
        float target); losses, metrics and model selection read it.

    Raises:
      ValueError: inputs/meta and label disagree on N, an unknown ``task``, or
        regression labels that are not floating point.
    """

    inputs: dict[str, np.ndarray]
    label: np.ndarray
    num_classes: int
    meta: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    name: str = "dataset"
    class_names: tuple[str, ...] | None = None
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    group_names: tuple[str, ...] | None = None
    task: Task = "classification"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")
        label = np.asarray(self.label)
        if self.task == "regression" and not np.issubdtype(label.dtype, np.floating):
            raise ValueError(f"{self.name}: regression labels must be floating point, got {label.dtype}; "
                             "cast them with label.astype(np.float32)")
        n = len(self.label)
        for key, value in {**self.inputs, **self.meta}.items():
            if len(value) != n:
                raise ValueError(
                    f"{self.name}: '{key}' has {len(value)} examples but label has {n}; "
                    "every input and meta array needs the same leading axis."
                )

    def __len__(self) -> int:
        return len(self.label)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def take(self, indices: np.ndarray) -> Batch:
        """Gathers the examples at ``indices`` into a host :class:`Batch`."""
        indices = np.asarray(indices)
        return Batch(
            inputs={k: v[indices] for k, v in self.inputs.items()},
            label=self.label[indices],
            index=indices.astype(np.int32),
            meta={k: v[indices] for k, v in self.meta.items()},
        )

    def subset(self, indices: np.ndarray, name: str | None = None) -> "ArrayDataset":
        """A new dataset holding only ``indices`` (re-indexed from 0)."""
        indices = np.asarray(indices)
        return dataclasses.replace(
            self,
            inputs={k: v[indices] for k, v in self.inputs.items()},
            label=self.label[indices],
            meta={k: v[indices] for k, v in self.meta.items()},
            name=name or self.name,
            dropped=dict(self.dropped),
        )


@dataclasses.dataclass
class DatasetSplits:
    """Train / validation / test splits of one dataset."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset

    def __post_init__(self):
        mods = self.train.modalities
        for split in (self.val, self.test):
            if split.modalities != mods:
                raise ValueError(
                    f"splits disagree on modalities: train has {mods}, {split.name} has {split.modalities}"
                )
            if split.task != self.train.task:
                raise ValueError(
                    f"splits disagree on the task: train is {self.train.task!r}, {split.name} is {split.task!r}"
                )

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.train.modalities

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"`` (the same for every split)."""
        return self.train.task
