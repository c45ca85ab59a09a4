"""Every per-run scalar of each epoch record, to TensorBoard event files and Weights & Biases.

``metrics.jsonl`` stays the run's own record; the loggers mirror it, with the 1-based epoch as
the step:

* TensorBoard (``train.tensorboard``, on by default with a run folder): event files written with
  ``tensorboardX`` (a small, well-kept writer that needs neither TensorFlow nor PyTorch; clu's
  writers need TensorFlow for event files), one folder per run under ``<run>/tensorboard/`` named
  after its label (``seed_0``), so TensorBoard overlays the runs of a tag (``val/acc``) in one
  chart: ``tensorboard --logdir runs/``.
* Weights & Biases (``train.wandb_project`` non-empty, ``wandb`` installed): one W&B run per fit,
  the scalars tagged per run (``val/acc/seed_0``).

With several processes only process 0 logs (:mod:`jaxmm.train.distributed`).

A resumed run rewrites its event files from the records its checkpoint covers and then continues,
so the event files always hold exactly what ``metrics.jsonl`` holds.
"""
from __future__ import annotations

import importlib
import logging
import os
import shutil
from typing import Mapping, Sequence

import numpy as np

from jaxmm.train.config import TrainConfig
from jaxmm.train.distributed import is_main_process

TENSORBOARD = "tensorboard"


def per_run_scalars(record: Mapping, runs: int) -> dict[str, np.ndarray]:
    """``{key: [runs] float64}``: the entries of an epoch record that hold one number per run.

    The ``epoch`` and anything that is not one number per run are left out.
    """
    out = {}
    for key, value in record.items():
        values = np.asarray(value)
        if key != "epoch" and values.shape == (runs,) and values.dtype.kind in "biuf":
            out[key] = values.astype(np.float64)
    return out


def slug(label: str) -> str:
    """A run label as a folder or tag name: ``seed 0, lam=10`` -> ``seed_0_lam=10``."""
    return label.replace(", ", "_").replace(" ", "_")


def _import(module: str, error: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(error) from None


def check_available(cfg: TrainConfig, run_dir: str | None) -> None:
    """Refuses, before anything trains, a logger that is asked for but not installed.

    Raises:
      ImportError: one line naming the setting and what to do.
    """
    if cfg.tensorboard and run_dir:
        _import("tensorboardX", "train.tensorboard is on but tensorboardX is not installed; pip install tensorboardX "
                                "or set train.tensorboard=False")
    if cfg.wandb_project:
        _import("wandb", "train.wandb_project is set but wandb is not installed; pip install wandb or unset it")


class EpochLoggers:
    """The loggers ``cfg`` asks for, fed one epoch record at a time; use as a context manager.

    Args:
      cfg: the epoch loop's config (``tensorboard``, ``wandb_project``).
      run_dir: the run folder (``None``: no event files).
      labels: a distinct label per run (:func:`~jaxmm.train.outputs.run_labels`).
      history: the records already in ``metrics.jsonl`` (a resumed run), logged first.
      name: the W&B run name.
      config: the run's configuration for W&B (plain data).

    On processes other than 0 nothing is logged.

    Raises:
      ImportError: a logger asked for is not installed (:func:`check_available`).
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | None, labels: Sequence[str], history: Sequence[Mapping] = (),
                 *, name: str = "", config: Mapping | None = None):
        check_available(cfg, run_dir)
        self.labels = [slug(label) for label in labels]
        self.writers = []
        main = is_main_process()
        if cfg.tensorboard and run_dir and main:
            from tensorboardX import SummaryWriter

            # NaN is a value of the records (synergy without unimodal heads, empty groups), not a fault
            logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
            folder = os.path.join(run_dir, TENSORBOARD)
            shutil.rmtree(folder, ignore_errors=True)  # a new run, or a resume that rewrites what it covers
            self.writers = [SummaryWriter(os.path.join(folder, label)) for label in self.labels]
        self.wandb = None
        if cfg.wandb_project and main:
            wandb = importlib.import_module("wandb")
            self.wandb = wandb.init(project=cfg.wandb_project, name=name or None, config=dict(config or {}),
                                    dir=run_dir)
        for record in history:
            self.write(record)

    def write(self, record: Mapping) -> None:
        """Logs every per-run scalar of ``record`` at step ``record['epoch']`` (and flushes the event files)."""
        epoch = int(record["epoch"])
        scalars = per_run_scalars(record, len(self.labels))
        for r, writer in enumerate(self.writers):
            for key, values in scalars.items():
                writer.add_scalar(key, values[r], epoch)
            writer.flush()
        if self.wandb is not None:
            self.wandb.log({f"{key}/{label}": values[r] for key, values in scalars.items()
                            for r, label in enumerate(self.labels)}, step=epoch)

    def close(self, failed: bool = False) -> None:
        """Closes the event files and finishes the W&B run (marked failed if ``failed``)."""
        for writer in self.writers:
            writer.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)

    def __enter__(self) -> "EpochLoggers":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(failed=kind is not None)
