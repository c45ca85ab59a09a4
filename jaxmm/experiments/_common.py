"""Helpers shared by the experiments: their common options, tables and summaries.

An experiment describes each of its runs as a :class:`~jaxmm.train.config.RunConfig` (the type
``jaxmm train --config`` reads) and trains it with :func:`jaxmm.train.runs.run`; the options every
experiment shares (``--seeds``, ``--epochs``, ``--set``, ``--out-dir``, ``--overwrite``) are
applied to those configs by :func:`configure`, type-checked as ``jaxmm train``'s are.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Sequence

import numpy as np

from jaxmm.train.config import RunConfig, apply_overrides, parse_seeds
from jaxmm.train.outputs import RunDir


def experiment_parser(name: str, doc: str, *, epochs: int | None) -> argparse.ArgumentParser:
    """The parser of ``jaxmm experiment <name>`` with the options every experiment shares.

    Args:
      epochs: the default of ``--epochs`` (``None``: the experiment's protocol decides).
    """
    p = argparse.ArgumentParser(prog=f"jaxmm experiment {name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    default = epochs if epochs else "the protocol's"
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs of every run (default {default})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every run's config, as jaxmm train --set does, e.g. "
                        "train.batch_size=32 or optimizer.weight_decay=0 (repeatable)")
    p.add_argument("--out-dir", default="runs", help="folder of the experiment's output folder (default runs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the runs an earlier invocation left in the output folder")
    return p


def parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parses ``argv``; a bad ``--seeds`` or ``--set`` stops with one line naming it (checked on a default config)."""
    args = parser.parse_args(argv)
    try:
        args.seeds = parse_seeds(args.seeds)
        configure(RunConfig(), seeds=args.seeds, overrides=args.set)
    except ValueError as e:
        parser.error(str(e))
    return args


def configure(cfg: RunConfig, *, seeds: Sequence[int] | None = None, epochs: int | None = None,
              progress: bool | None = None, overrides: Sequence[str] = (), **fields) -> RunConfig:
    """A copy of ``cfg`` with ``fields``, the seeds, the epochs, the progress switch and the ``--set``
    overrides applied (``None``: keep the config's), every value type-checked."""
    out = dataclasses.replace(cfg, **fields, **({} if seeds is None else {"seeds": tuple(seeds)}))
    train = {k: v for k, v in (("epochs", epochs), ("progress", progress)) if v is not None}
    out.train = dataclasses.replace(out.train, **train)
    return apply_overrides(out, list(overrides))


def pyplot():
    """``matplotlib.pyplot`` (imported when a figure is drawn; the backend is matplotlib's choice)."""
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


def output_dir(base: str, name: str, overwrite: bool = False) -> RunDir:
    """``<base>/<name>`` as a :class:`RunDir`, refusing one an earlier invocation left results in.

    Raises:
      FileExistsError: it holds ``results.json`` and ``overwrite`` is not set (the message names
        ``--overwrite`` and ``--out-dir``).
    """
    path = os.path.join(base, name)
    if not overwrite and os.path.exists(os.path.join(path, "results.json")):
        raise FileExistsError(f"{path} holds the results of an earlier run of this experiment; pass --overwrite "
                              "to replace them or another --out-dir to keep both")
    return RunDir(path)
