"""Deterministic, seeded batching of stacked per-run datasets (host side).

A run set's split is held as arrays with a leading run axis ``[R, N, ...]``.
Epoch ``e`` of run ``r`` visits the permutation drawn from ``(seed_r, e)``, so
the data order after a resume is exactly the order without interruption: the
iterator position is just the epoch number. Batches are plain gathers of the
cached arrays: frame augmentation runs on the device, inside the train step.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from jaxmm.data.types import ArrayDataset, Batch


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``np.stack``, or a read-only broadcast view (no copy) when every run holds the same array object."""
    if all(a is arrays[0] for a in arrays):
        return np.broadcast_to(arrays[0], (len(arrays), *np.shape(arrays[0])))
    return np.stack(arrays)


def stack_runs(datasets: Sequence[ArrayDataset]) -> Batch:
    """Stacks one dataset per run into a host :class:`Batch` with leading axes ``[R, N]``.

    An array that every run shares (the same object) becomes a read-only broadcast view.
    """
    first = datasets[0]
    for d in datasets[1:]:
        if len(d) != len(first) or d.modalities != first.modalities:
            raise ValueError(f"runs of one grid need equally sized splits with the same modalities; "
                             f"{first.name} has {len(first)} examples of {first.modalities}, "
                             f"{d.name} has {len(d)} of {d.modalities}")
    stack = lambda get: {k: _stack([get(d)[k] for d in datasets]) for k in get(first)}
    n = len(first)
    return Batch(inputs=stack(lambda d: d.inputs), label=_stack([d.label for d in datasets]),
                 index=np.broadcast_to(np.arange(n, dtype=np.int32), (len(datasets), n)),
                 meta=stack(lambda d: d.meta))


def epoch_permutations(seeds: Sequence[int], epoch: int, n: int) -> np.ndarray:
    """``[R, n]`` per-run permutations of epoch ``epoch``."""
    return np.stack([np.random.default_rng([int(s), int(epoch)]).permutation(n) for s in seeds])


def gather(data: Batch, idx: np.ndarray, valid: np.ndarray) -> Batch:
    """Per-run rows ``idx [R, B]`` of stacked ``data``; ``meta['valid']`` marks real (unpadded) rows."""
    rows = np.arange(idx.shape[0])[:, None]
    take = lambda tree: {k: v[rows, idx] for k, v in tree.items()}
    return Batch(inputs=take(data.inputs), label=data.label[rows, idx], index=data.index[rows, idx],
                 meta={**take(data.meta), "valid": valid.astype(np.float32)})


def batches(data: Batch, order: np.ndarray, batch_size: int, rows: slice | None = None) -> Iterator[Batch]:
    """Batches of ``batch_size`` following ``order [R, N]``; the last one is padded and masked.

    ``rows`` gathers only those rows of every batch (one process's share of a global batch,
    :func:`~jaxmm.data.placement.process_rows`); the order and padding are those of the whole batch.
    """
    n = order.shape[1]
    for start in range(0, n, batch_size):
        idx = order[:, start:start + batch_size]
        valid = np.ones(idx.shape, bool)
        if idx.shape[1] < batch_size:
            pad = batch_size - idx.shape[1]
            idx = np.concatenate([idx, np.repeat(idx[:, :1], pad, axis=1)], axis=1)
            valid = np.concatenate([valid, np.zeros((idx.shape[0], pad), bool)], axis=1)
        if rows is not None:
            idx, valid = idx[:, rows], valid[:, rows]
        yield gather(data, idx, valid)


def check_augmented(data: Batch, modalities: Sequence[str]) -> None:
    """Raises ValueError unless every modality in ``modalities`` holds ``uint8 [..., H, W, 3]`` frames.

    The train step augments those frames on the device (:mod:`jaxmm.data.augment`); this checks the
    stacked host data once, before anything is compiled.
    """
    for m in modalities:
        if m not in data.inputs:
            raise ValueError(f"train.augment_frames names {m!r}, which is not an input of this dataset "
                             f"(inputs: {sorted(data.inputs)})")
        x = data.inputs[m]
        if x.dtype != np.uint8 or x.ndim < 5 or x.shape[-1] != 3:
            raise ValueError(f"train.augment_frames: {m!r} must be uint8 frames [runs, N, ..., H, W, 3] as the "
                             f"video readers store them, got {x.dtype} {x.shape}")


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch (the last one may be partial)."""
    return -(-n // batch_size)
