"""The run folder: ``config.json``, ``metrics.jsonl``, ``results.json``, and how its runs are labelled.

Epochs are whole and 1-based wherever a user sees them: a ``metrics.jsonl`` record's ``epoch`` is
the number of epochs trained when it was written (the first record is epoch 1).

With several processes only process 0 writes (:mod:`jaxmm.train.distributed`); every process reads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from jaxmm.train.distributed import is_main_process

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _jsonable(x):
    if dataclasses.is_dataclass(x):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray) or hasattr(x, "tolist"):
        return np.asarray(x).tolist()
    return x


def _write_error(path: str, e: OSError) -> OSError:
    """One line naming the file, the cause and what to do."""
    err = OSError(f"could not write {path} ({e.strerror or e}); free space there, fix its permissions or pick "
                  "another --out-dir")
    err.errno = e.errno
    return err


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader (or a process killed mid-write) sees the old file or the new one, never a part.

    Raises:
      OSError: the write failed (disk full, read-only folder, …), naming ``path``; the old file is intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    payload = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from other users
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise _write_error(path, e) from e


class RunDir:
    """Writes a run's outputs under ``path``.

    ``config.json``/``results.json`` (:meth:`write_json`) and a rewritten ``metrics.jsonl`` are replaced
    atomically; :meth:`append_metrics` adds one whole line per call (one ``write`` on an append-only
    descriptor), so an interruption leaves at most a torn *last* line, which :meth:`read_metrics` drops
    with a warning. Only process 0 writes (on the others the writing methods do nothing).
    """

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)

    def file(self, name: str) -> str:
        """Absolute path of an output file."""
        return os.path.join(self.path, name)

    def write_json(self, name: str, obj: Any) -> None:
        """Writes ``obj`` (dataclasses, numpy arrays allowed) as indented JSON, atomically.

        Raises:
          OSError: naming the file, when it cannot be written; a previous version stays intact.
        """
        if is_main_process():
            write_atomic(self.file(name), json.dumps(_jsonable(obj), indent=2) + "\n")

    def append_metrics(self, record: dict) -> None:
        """Appends one epoch's record to ``metrics.jsonl`` as one line, in one write.

        Raises:
          OSError: naming the file, when it cannot be written.
        """
        if not is_main_process():
            return
        path = self.file("metrics.jsonl")
        line = (json.dumps(_jsonable(record)) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:  # one write unless the kernel takes less (then the rest follows at once)
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as e:
            raise _write_error(path, e) from e

    def read_metrics(self, epochs: int | None = None) -> list[dict]:
        """Records of ``metrics.jsonl`` (those of the first ``epochs`` epochs if given).

        A torn last line (an interrupted append) is dropped with a warning naming the file. A file
        written while epochs were 0-based (its first record is epoch 0) is read 1-based.

        Raises:
          ValueError: a line other than the last is not a JSON record, naming the file and the line.
        """
        path = self.file("metrics.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            lines = [(n, line) for n, line in enumerate(f.read().split(b"\n"), 1) if line.strip()]
        records = []
        for i, (n, line) in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "epoch" not in record:
                    raise ValueError("not a record with an 'epoch'")
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if i + 1 < len(lines):
                    raise ValueError(f"{path} line {n} is not a metrics record ({e}); the file is damaged: "
                                     "delete that line, or start the run over with --overwrite") from None
                warnings.warn(f"dropped the torn last line {n} of {path} (an interrupted write): "
                              f"{line[:60].decode(errors='replace')!r}", stacklevel=2)
                continue
            records.append(record)
        if records and records[0]["epoch"] == 0:
            records = [{**r, "epoch": r["epoch"] + 1} for r in records]
        return [r for r in records if epochs is None or r["epoch"] <= epochs]

    def truncate_metrics(self, epochs: int) -> None:
        """Keeps the records of the first ``epochs`` epochs, those a resumed checkpoint covers (and drops a
        torn last line)."""
        keep = self.read_metrics(epochs)
        path = self.file("metrics.jsonl")
        if is_main_process() and (keep or os.path.exists(path)):
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))


def run_labels(seeds: Sequence[int], hparams: Sequence[Mapping[str, Any]] | None = None) -> list[str]:
    """A distinct label per run for legends and logger names.

    ``seed 0``, plus the hyper-parameters that differ between runs (``seed 0, lam=10``); runs still
    alike (a sweep of per-run data) are numbered in front (``run 2, seed 0``).
    """
    hparams = list(hparams or [{}] * len(seeds))
    varying = [k for k in dict.fromkeys(k for h in hparams for k in h) if len({repr(h.get(k)) for h in hparams}) > 1]
    labels = [", ".join([f"seed {s}", *(f"{k}={_short(h.get(k))}" for k in varying)]) for s, h in zip(seeds, hparams)]
    if len(set(labels)) < len(labels):
        labels = [f"run {i}, {label}" for i, label in enumerate(labels)]
    return labels


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
