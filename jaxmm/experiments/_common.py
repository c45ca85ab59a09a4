"""Helpers shared by the experiments: grids of vmapped runs, tables and summaries."""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from jaxmm.train.outputs import RunDir


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, tight: bool = True) -> None:
    """Lays out (unless ``tight=False``: a colour bar's axes), saves as PNG and closes ``fig``."""
    if tight:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    else:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)


def parse_names(text: str, valid, kind: str = "method") -> list[str]:
    """Comma-separated names, checked against ``valid`` (SystemExit naming the unknown ones and the valid ones)."""
    names = [m for m in text.split(",") if m]
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise SystemExit(f"unknown {kind}(s) {unknown}; choose from {list(valid)}")
    return names


def mean_std_table(rows: Sequence[str], cols: Sequence[str], values: dict, row_title: str, fmt="{:.3f}") -> str:
    """A Markdown table whose cells are ``mean ± std`` of ``values[(row, col)]`` (a list of per-seed numbers)."""
    head = f"| {row_title} | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        cells = []
        for c in cols:
            v = np.asarray(values.get((r, c), []), float)
            cells.append(f"{fmt.format(v.mean())} ± {fmt.format(v.std())}" if v.size else "—")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(out: RunDir, title: str, command: str, sections: dict[str, str], seconds: float) -> str:
    """Writes ``summary.md`` (title, the command, sections) and returns its text."""
    text = [f"# {title}", "", f"Command: `{command}`", f"Wall time: {seconds:.0f} s", ""]
    for heading, body in sections.items():
        text += [f"## {heading}", "", body, ""]
    body = "\n".join(text)
    with open(out.file("summary.md"), "w") as f:
        f.write(body)
    return body


def finish(out: RunDir, experiment: str, argv, title: str, sections: dict[str, str], results: dict,
           timer: "Timer") -> None:
    """Ends an experiment: ``results.json``, ``summary.md`` (with the command ``jaxmm experiment <experiment> ...``)
    and a line naming the output folder and the wall time."""
    out.write_json("results.json", results)
    write_summary(out, title, f"jaxmm experiment {experiment} " + " ".join(argv or []), sections, timer.seconds)
    print(f"\noutputs: {out.path}/ ({timer.seconds:.0f} s)")


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self):
        self.start = time.time()

    @property
    def seconds(self) -> float:
        return time.time() - self.start


def output_dir(base: str, name: str) -> RunDir:
    """``<base>/<name>`` as a :class:`RunDir`."""
    return RunDir(os.path.join(base, name))
