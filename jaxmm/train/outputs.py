"""The run folder: ``config.json``, ``metrics.jsonl``, ``results.json`` and PNG plots."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np


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


class RunDir:
    """Writes a run's outputs under ``path``."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)

    def file(self, name: str) -> str:
        """Absolute path of an output file."""
        return os.path.join(self.path, name)

    def write_json(self, name: str, obj: Any) -> None:
        """Writes ``obj`` (dataclasses, numpy arrays allowed) as indented JSON."""
        with open(self.file(name), "w") as f:
            json.dump(_jsonable(obj), f, indent=2)

    def append_metrics(self, record: dict) -> None:
        """Appends one epoch's record to ``metrics.jsonl``."""
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")

    def read_metrics(self, up_to_epoch: int | None = None) -> list[dict]:
        """Records of ``metrics.jsonl`` (those with ``epoch < up_to_epoch`` if given)."""
        if not os.path.exists(self.file("metrics.jsonl")):
            return []
        with open(self.file("metrics.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
        return [r for r in records if up_to_epoch is None or r["epoch"] < up_to_epoch]

    def truncate_metrics(self, up_to_epoch: int) -> None:
        """Drops records of epochs not covered by the checkpoint being resumed."""
        keep = self.read_metrics(up_to_epoch)
        with open(self.file("metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)


def plot_curves(records: list[dict], keys: list[str], path: str, title: str = "") -> None:
    """One panel per metric key; one line per run (records hold per-run lists)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if records and k in records[0]]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, key in zip(axes[0], keys):
        values = np.array([r[key] for r in records], dtype=float)
        values = values.reshape(len(records), -1)
        for run in range(values.shape[1]):
            ax.plot(epochs, values[:, run], alpha=0.8, lw=1)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
