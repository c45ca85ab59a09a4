"""Keeps the next few batches already on the device mesh while the current step runs.

:func:`prefetch_to_mesh` wraps an iterator of host :class:`~jaxmm.data.types.Batch`
objects (e.g. :func:`jaxmm.train.batching.batches`) and moves them onto the mesh
with :func:`jaxmm.data.placement.shard_batch` in a background thread, so host-side
gathering and the transfer overlap with the training step (frame augmentation runs
on the device, in the step: :mod:`jaxmm.data.augment`). The order and content of
the batches are unchanged. ``benchmarks/bench_pipeline.py`` measured it against a
``grain.DataLoader`` on the same cached arrays (see ``benchmarks/results/README.md``).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

from jaxmm.data.types import Batch
from jaxmm.data.placement import shard_batch

_POLL_S = 0.05  # how often a producer blocked on a full queue checks for shutdown
_ITEM, _END, _ERROR = range(3)


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    """Puts ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch_to_mesh(batches: Iterable[Batch], mesh, size: int = 2, *, batch_axis: int = 1,
                     local: bool = False) -> Iterator[Batch]:
    """Yields ``shard_batch(b, mesh, local=local)`` for every ``b`` in ``batches``, ``size`` batches ahead.

    A daemon thread pulls from ``batches`` (so any work the iterator does, such
    as gathering, runs there) and places each batch on the mesh; a queue of
    ``size`` bounds how many device batches wait. An exception raised by
    ``batches`` or by the transfer is re-raised in the consumer, after the batches
    produced before it. Closing the generator (``break``, ``close()``, garbage
    collection) stops and joins the thread.

    Args:
      batches: host batches with arrays ``[R, B, ...]`` (run axis first).
      mesh: the device mesh with a ``data`` axis.
      size: number of batches kept ready (at least 1).
      batch_axis: the axis split over ``data`` (see :func:`~jaxmm.data.placement.shard_batch`).
      local: the batches hold only this process's rows of each global batch
        (:func:`~jaxmm.data.placement.process_rows`; the same with one process).

    Yields:
      the same batches in the same order, as device arrays sharded over ``data``.

    Raises:
      ValueError: if ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"prefetch size must be at least 1, got {size}")
    return _prefetch(iter(batches), mesh, size, batch_axis, local)


def _prefetch(source: Iterator[Batch], mesh, size: int, batch_axis: int, local: bool) -> Iterator[Batch]:
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def produce():
        try:
            for batch in source:
                if not _put(q, stop, (_ITEM, shard_batch(batch, mesh, batch_axis, local=local))):
                    return
            _put(q, stop, (_END, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            _put(q, stop, (_ERROR, e))

    thread = threading.Thread(target=produce, name="jaxmm-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
