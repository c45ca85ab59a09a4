"""Robustness to missing and noisy modalities (MultiBench's robustness curves) of a loaded run.

For each modality, the split's metric (classification ``acc``, regression ``mae``) as that
modality is

* *dropped*: every example's input replaced by zeros (``fill="zero"``) or by the train split's
  per-feature mean (``fill="mean"``), the other modalities left as they are;
* *noised*: Gaussian noise of standard deviation ``level × std`` added, ``std`` the standard
  deviation of the modality's training inputs (one number over all its finite values), at each
  ``level``. Run ``r`` draws one standard-normal pattern per modality from ``(seed, r, modality)``
  and scales it per level, so level 0 is the clean input and the curves are smooth in the level.

Each run is evaluated on its own split with its own train statistics; the results hold every run
and their mean ± std. Noise goes on the content of a sequence only: the padded steps of a sequence
encoder's padding rule (``left``/``right``) and the flag channel of the ``mask`` rule stay as they
are, so noise never turns padding into content (:mod:`jaxmm.models.sequence`).
Integer inputs (``uint8`` frames) are rounded and clipped to their dtype after the fill or the noise.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from jaxmm.models.encoders import SEQUENCE_ENCODERS
from jaxmm.models.sequence import split_valid
from jaxmm.train.diagnostics import save_png
from jaxmm.train.evaluate import LoadedRun
from jaxmm.train.outputs import RunDir

FILLS = ("zero", "mean")
LEVELS = (0.0, 0.25, 0.5, 1.0, 2.0)


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0,0.5,1,2"`` -> ``(0.0, 0.5, 1.0, 2.0)``.

    Raises:
      ValueError: not comma-separated non-negative numbers.
    """
    try:
        levels = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--levels {text!r}: give comma-separated non-negative numbers, e.g. 0,0.5,1,2") from None
    _check_levels(levels)
    return levels


def train_statistics(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-feature mean (``x.shape[1:]``) and the overall standard deviation of training inputs ``x [N, ...]``.

    Non-finite values (``-inf`` audio of the MultiBench pickles) are left out; a feature with no finite
    value has mean 0.
    """
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        x = np.where(np.isfinite(x), x, np.nan)
        mean = np.nan_to_num(np.nanmean(x, axis=0, dtype=np.float64))
        return mean, float(np.nanstd(x, dtype=np.float64))
    return np.mean(x, axis=0, dtype=np.float64), float(np.std(x, dtype=np.float64))


def dropped(x: np.ndarray, fill: str, mean: np.ndarray) -> np.ndarray:
    """``x [N, ...]`` with every example replaced by zeros (``fill="zero"``) or by ``mean`` (``"mean"``)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    value = np.zeros(x.shape[1:]) if fill == "zero" else mean
    return _cast(np.broadcast_to(value, x.shape), x.dtype)


def noised(x: np.ndarray, noise: np.ndarray, scale: float) -> np.ndarray:
    """``x + scale * noise`` in ``x``'s dtype (``x`` itself for ``scale == 0``)."""
    if scale == 0:
        return x
    return _cast(x.astype(np.float32) + np.float32(scale) * noise, x.dtype)


def noise_support(x: np.ndarray, padding: str | None) -> np.ndarray:
    """Where noise goes in ``x``: everywhere (``padding`` ``None`` or ``none``: not a masked sequence),
    else the valid steps of the padding rule (``[N, T, 1]``; ``mask``: without the flag channel)."""
    if padding in (None, "none"):
        return np.ones((1,) * x.ndim, bool)
    valid = np.asarray(split_valid(x, padding)[1])[..., None]
    if padding == "mask":
        channels = np.arange(x.shape[-1]) < x.shape[-1] - 1
        return valid & channels
    return valid


def _cast(x: np.ndarray, dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return np.asarray(x, dtype)


@dataclasses.dataclass
class Robustness:
    """The robustness curves of the runs of one run folder.

    Attributes:
      metric: the metric (``acc`` or ``mae``).
      split: the evaluated split.
      fill: how a dropped modality was filled (``zero`` or ``mean``).
      levels: the noise levels (multiples of each modality's train standard deviation).
      seed: the seed of the noise.
      clean: ``[R]`` the metric of every run on the clean split.
      noise: modality -> ``[L, R]`` the metric at every level of every run.
      drop: modality -> ``[R]`` the metric of every run with the modality dropped.
    """

    metric: str
    split: str
    fill: str
    levels: tuple[float, ...]
    seed: int
    clean: np.ndarray
    noise: dict[str, np.ndarray]
    drop: dict[str, np.ndarray]

    def to_json(self) -> dict:
        """Every value per run (``per_run``) with its mean and std over runs, as plain data."""

        def stats(values: np.ndarray) -> dict:
            return {"mean": values.mean(-1).tolist(), "std": values.std(-1).tolist(), "per_run": values.tolist()}

        return {"metric": self.metric, "split": self.split, "fill": self.fill, "levels": list(self.levels),
                "seed": self.seed, "clean": stats(self.clean),
                "modalities": {m: {"noise": stats(self.noise[m]), "drop": stats(self.drop[m])} for m in self.noise}}

    def table(self) -> str:
        """A markdown table: a row per modality, a column per noise level and the dropped modality (mean ± std)."""
        cell = lambda v: f"{v.mean():.4f} ± {v.std():.4f}"
        head = [f"noise {level:g}" for level in self.levels] + [f"dropped ({self.fill})"]
        lines = [f"{self.split} {self.metric} (mean ± std over {self.clean.size} runs; clean {cell(self.clean)})", "",
                 "| modality | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
        for m in self.noise:
            lines.append(f"| {m} | " + " | ".join([*(cell(v) for v in self.noise[m]), cell(self.drop[m])]) + " |")
        return "\n".join(lines)

    def figure(self, title: str = ""):
        """A matplotlib figure: the metric against the noise level, one curve per modality (mean ± std over
        runs), the dropped modality's value marked right of the curves in the same colour."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.2), layout="constrained")
        ax = fig.add_subplot()
        levels = np.asarray(self.levels)
        span = levels.max() - levels.min() or 1.0
        at = levels.max() + 0.25 * span
        for i, m in enumerate(self.noise):
            colour = f"C{i % 10}"
            mean, std = self.noise[m].mean(-1), self.noise[m].std(-1)
            ax.plot(levels, mean, "o-", color=colour, label=m)
            ax.fill_between(levels, mean - std, mean + std, color=colour, alpha=0.2)
            ax.errorbar([at], [self.drop[m].mean()], [self.drop[m].std()], fmt="s", color=colour, capsize=3)
        ax.axhline(self.clean.mean(), color="0.5", ls=":", lw=1, label="clean")
        ax.set_xticks([*levels, at], [f"{v:g}" for v in levels] + [f"dropped\n({self.fill})"])
        ax.set_xlabel("noise std (× the modality's train std)")
        ax.set_ylabel(f"{self.split} {self.metric}")
        ax.set_title(title or f"robustness ({self.clean.size} runs, mean ± std)")
        ax.legend()
        return fig


def robustness(run: LoadedRun, *, levels: Sequence[float] = LEVELS, fill: str = "zero", split: str = "test",
               seed: int = 0) -> Robustness:
    """The robustness curves of every run of ``run`` (see the module docstring).

    Args:
      run: a run loaded by :func:`~jaxmm.train.evaluate.load_run` (read: its ``splits``, ``modalities``,
        ``task``, ``predict_runs`` and ``config.model``, whose sequence encoders' padding rules say
        where noise goes).
      levels: noise levels, multiples of each modality's train standard deviation.
      fill: ``zero`` or ``mean`` (the train split's per-feature mean) for a dropped modality.
      split: ``test`` or ``val``.
      seed: the seed of the noise.

    Returns:
      A :class:`Robustness`.

    Raises:
      ValueError: a bad level, fill or split.
    """
    levels = tuple(float(v) for v in levels)
    _check_levels(levels)
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    data = [getattr(s, split) for s in run.splits]
    inputs = {m: [d.inputs[m] for d in data] for m in run.modalities}
    metric = run.task.select_metric

    def score(changed: dict[str, list[np.ndarray]]) -> np.ndarray:
        pred = run.predict_runs({m: np.stack(changed.get(m, xs)) for m, xs in inputs.items()})
        return np.asarray([run.task.report(p, d.label)[metric] for p, d in zip(pred, data)])

    clean = score({})
    model = run.config.model
    padding = {m: model.encoder_options.get(m, {}).get("padding", "left")
               for m in run.modalities if model.encoders.get(m) in SEQUENCE_ENCODERS}
    noise, drop = {}, {}
    for k, m in enumerate(run.modalities):
        stats = [train_statistics(s.train.inputs[m]) for s in run.splits]
        drop[m] = score({m: [dropped(x, fill, mean) for x, (mean, _) in zip(inputs[m], stats)]})
        patterns = [np.random.default_rng([seed, r, k]).standard_normal(x.shape, np.float32)
                    * noise_support(x, padding.get(m)) for r, x in enumerate(inputs[m])]
        noise[m] = np.stack([score({m: [noised(x, z, level * std)
                                        for x, z, (_, std) in zip(inputs[m], patterns, stats)]}) for level in levels])
    return Robustness(metric, split, fill, levels, seed, clean, noise, drop)


def write_robustness(run: LoadedRun, result: Robustness) -> list[str]:
    """Writes ``robustness.json`` and ``robustness.png`` into the run folder (atomically).

    Returns:
      The paths written.
    """
    out = RunDir(run.path)
    out.write_json("robustness.json", {"seeds": list(run.seeds), "hparams": list(run.hparams),
                                       "selected_epoch": run.selected_epoch, **result.to_json()})
    save_png(result.figure(f"{run.config.method} on {run.config.dataset}: robustness ({result.clean.size} runs)"),
             out.file("robustness.png"))
    return [out.file("robustness.json"), out.file("robustness.png")]


def _check_levels(levels: Sequence[float]) -> None:
    if not levels or not all(math.isfinite(v) and v >= 0 for v in levels):
        raise ValueError(f"noise levels must be non-negative numbers, e.g. 0,0.5,1,2; got {list(levels)}")

