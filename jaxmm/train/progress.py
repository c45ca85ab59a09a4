"""Progress of a fit: a tqdm bar on a terminal, one plain line per epoch anywhere else.

A bar redraws itself with carriage returns, which a CI log or a file keeps as one long smear; when
standard output is not a terminal each finished epoch is printed once instead::

    vanilla x2 epoch 3/10: loss 0.4123, val acc 0.8125 (1.9 s)
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from jaxmm.train.distributed import is_main_process


class Progress:
    """Reports finished epochs (1-based) on ``stream``; use as a context manager.

    Args:
      desc: what trains, e.g. ``vanilla x2``.
      start: epochs already done (a resumed run).
      total: epochs of the whole run.
      enabled: ``False`` shows nothing (nor does any process but process 0 of several).
      stream: where to write (default: standard output at construction). A terminal gets a bar,
        anything else one line per epoch.
    """

    def __init__(self, desc: str, start: int, total: int, *, enabled: bool = True, stream: TextIO | None = None):
        self.desc, self.total, self.enabled = desc, total, enabled and is_main_process()
        self.stream = stream or sys.stdout
        terminal = self.enabled and self.stream.isatty()
        self.bar = tqdm(desc=desc, initial=start, total=total, file=self.stream) if terminal else None
        self.since = time.perf_counter()

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Reports that ``epoch`` (1-based) finished, with its mean ``values`` (e.g. loss, val acc)."""
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
        elif self.enabled:
            now = time.perf_counter()
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"{self.desc} epoch {epoch}/{self.total}: {shown} ({now - self.since:.1f} s)", file=self.stream,
                  flush=True)
            self.since = now

    def close(self) -> None:
        """Closes the bar (if any)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
