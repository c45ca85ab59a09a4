"""Checks and bookkeeping shared by the dataset readers.

Readers tell apart two kinds of problems:

* **structural** ones (a missing root, split file or class list; a malformed
  line in a split file) always raise, with the file and the expected layout;
* **per-example** ones (a missing or truncated media file, an unreadable image)
  drop that example. :class:`DropLog` counts drops per reason, logs a summary
  naming one offending file per reason, and raises instead when ``strict``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger("jaxmm.data")


class DataFormatError(ValueError):
    """A data file exists but does not have the expected format."""


def require_path(path: str | os.PathLike, what: str, layout: str) -> Path:
    """Returns ``path`` as a :class:`Path`, raising if it does not exist.

    Args:
      path: file or directory that must exist.
      what: what the path is, e.g. ``"CREMA-D split file"``.
      layout: the on-disk layout the reader expects, quoted in the error.

    Raises:
      FileNotFoundError: naming ``path`` and the expected layout.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{layout}")
    return path


class DropLog:
    """Counts the examples a reader skips, per reason.

    Args:
      name: dataset/split name used in messages.
      layout: expected layout, quoted in strict-mode errors.
      strict: raise on the first problem instead of dropping the example.
    """

    def __init__(self, name: str, layout: str = "", strict: bool = False):
        self.name = name
        self.layout = layout
        self.strict = strict
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def drop(self, reason: str, path: str | os.PathLike, detail: str = "") -> None:
        """Records that the example stored at ``path`` is skipped for ``reason``.

        Args:
          reason: short key such as ``"missing_audio"`` or ``"bad_image"``; reasons
            starting with ``missing`` raise :class:`FileNotFoundError` in strict mode,
            the others :class:`DataFormatError`.
          path: the offending file (or directory).
          detail: optional explanation (e.g. the decoder's message).

        Raises:
          FileNotFoundError, DataFormatError: in strict mode.
        """
        message = f"{self.name}: {reason}: {path}" + (f" ({detail})" if detail else "")
        if self.strict:
            error = FileNotFoundError if reason.startswith("missing") else DataFormatError
            raise error(message + (f"\nExpected layout:\n{self.layout}" if self.layout else ""))
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, message)
        logger.debug(message)

    def summary(self) -> dict[str, int]:
        """Logs one warning summarising all drops and returns ``reason -> count``."""
        if self.counts:
            lines = [f"  {reason}: {count} (first: {self.first[reason]})" for reason, count in self.counts.items()]
            logger.warning("%s: dropped %d examples\n%s", self.name, sum(self.counts.values()), "\n".join(lines))
        return dict(self.counts)


def check_nonempty(kept: int, listed: int, name: str, layout: str, dropped: dict[str, int]) -> None:
    """Raises when a split listed examples but none of them could be loaded.

    Args:
      kept: number of examples kept.
      listed: number of examples the split listed (0 is allowed: an empty split).
      name: dataset/split name.
      layout: expected layout, quoted in the error.
      dropped: reason -> count of dropped examples.

    Raises:
      DataFormatError: if ``listed > 0`` and ``kept == 0``.
    """
    if listed and not kept:
        why = ", ".join(f"{r}={c}" for r, c in dropped.items())
        raise DataFormatError(f"{name}: none of the {listed} listed examples could be loaded ({why}).\n"
                              f"Expected layout:\n{layout}")


def stack_or_empty(items: list, shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.stack(items)``, or an empty ``[0, *shape]`` array when ``items`` is empty."""
    if not items:
        return np.zeros((0,) + tuple(shape), dtype)
    return np.stack(items).astype(dtype, copy=False)
