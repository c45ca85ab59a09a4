"""Data shared by several trainings in one process: each dataset loaded, and each run set stacked, once.

An experiment that trains several methods on the same grid of datasets (for instance in threads,
as ``jaxmm experiment spurious-xor`` does) passes one :class:`DataCache` to every
:func:`~jaxmm.train.runs.run`: the datasets are generated or read once, and the ``[R, N, ...]``
arrays of a run set are stacked once, instead of once per method. Safe to share between threads:
a value another thread is making is waited for, not made again.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable, Sequence

from jaxmm.data.types import ArrayDataset, Batch, DatasetSplits
from jaxmm.train.batching import stack_runs


class _Slot:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = False
        self.value = None


class DataCache:
    """Loaded datasets and stacked run sets, each made once and then shared (read-only)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}

    def _once(self, key: Hashable, make: Callable):
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
        with slot.lock:  # a failed make leaves the slot empty: the next caller tries again
            if not slot.done:
                slot.value, slot.done = make(), True
        return slot.value

    def splits(self, key: Hashable, load: Callable[[], DatasetSplits]) -> DatasetSplits:
        """The splits ``load()`` returns, loaded on the first call with ``key``."""
        return self._once(("splits", key), load)

    def stacked(self, datasets: Sequence[ArrayDataset]) -> Batch:
        """:func:`~jaxmm.train.batching.stack_runs` of ``datasets``, stacked once per sequence of the same objects."""
        key = ("stacked", *map(id, datasets))  # the slot keeps the datasets alive, so their ids stay theirs
        return self._once(key, lambda: (tuple(datasets), stack_runs(datasets)))[1]
