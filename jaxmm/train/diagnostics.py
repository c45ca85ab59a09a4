"""The pictures of a run, drawn from its epoch records.

:func:`write_figures` (called by ``fit`` for a run folder) writes beside ``metrics.jsonl``:

* ``curves.png``: training loss, the validation metric and its per-modality / per-source values;
* ``modalities.png``: each modality's validation accuracy over epochs, titled with what it is
  (:func:`modality_source`); a linear probe's accuracy when an epoch hook logs
  ``probe/val/<modality>``; and, given ``train.unimodal_reference``, each modality's utilisation
  (accuracy / reference) and gap (reference − accuracy);
* ``method_logs.png``: every per-step log of the method and its gradient transformation (epoch
  means: OGM-GE's ``coef`` and ``score``, InfoReg's and RedReg's ``beta``, AGM's ``kappa``,
  MMPareto's per-term gradient norms, …) and every epoch-hook log, one panel per quantity.

A colour per run, labelled with its seed (and the hyper-parameters that differ between runs); a
line style per modality; x axes count whole 1-based epochs.
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Mapping, Sequence

import numpy as np

from jaxmm.methods.base import Method
from jaxmm.train.outputs import write_atomic

HEAD = "unimodal head"
SLICE = "fused-head slice"
SHAPLEY = "Shapley response of the fused head"
DETACHED = "probe head on detached features"
LINEAR_DETACHED = "linear probe (head on detached features)"
PROBE = "linear probe, refit each epoch"

# What a method's evaluation pass reports as unimodal logits when it is not a trained unimodal head
# (each method's module docstring says so), by its options.
_SOURCES = {
    "ogm_ge": lambda options: SLICE if options.get("scores") == "fusion" else DETACHED,
    "inforeg": lambda options: SLICE if options.get("unimodal") == "slices" else HEAD,
    "agm": lambda options: SHAPLEY,
    "pmr": lambda options: DETACHED,
    "btw": lambda options: DETACHED if options.get("apply") == "embedding" and options.get("detach_heads") else HEAD,
}
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # line style, marker (drawn where epochs lack values)
SKIPPED_LOGS = ("epoch", "val/", "trainset/", "probe/", "train/loss", "train/term/")


def modality_source(method: Method, model: Any = None) -> str:
    """What the evaluation report's ``acc/<modality>`` measures for ``method`` on ``model``.

    The report scores the unimodal logits of the method's evaluation pass: trained unimodal heads
    for most methods; OGM-GE's (``scores="fusion"``) and InfoReg's (``unimodal="slices"``) fused-head
    slices (``W_m x_m + b/M`` for a linear concat head); AGM's Shapley responses of the fused head; heads trained on
    stop-gradient features (OGM-GE ``scores="heads"``, PMR's probe heads, BTW's detached heads,
    ``model.detach_unimodal``), linear probes when the heads are one Linear layer.

    Args:
      method: the trained method.
      model: its :class:`~jaxmm.models.multimodal.ModelConfig` (or a model factory: not inspected).
    """
    if method.name in _SOURCES:
        source = _SOURCES[method.name](method.info.options)
    elif method.model.unimodal_heads:
        source = HEAD
    else:
        return f"per-modality output of {method.name}"
    if source == HEAD and getattr(model, "detach_unimodal", False):
        source = DETACHED
    if source == DETACHED and not getattr(model, "unimodal_hidden", (0,)):
        return LINEAR_DETACHED
    return source


def check_reference(reference: Mapping[str, float], modalities: Sequence[str], task_kind: str) -> None:
    """Refuses a ``train.unimodal_reference`` that cannot be compared with this run (before it trains).

    Raises:
      ValueError: a regression task, or a modality the data lacks.
    """
    if reference and task_kind != "classification":
        raise ValueError(f"train.unimodal_reference compares accuracies, but this is a {task_kind} task; unset it")
    unknown = sorted(set(reference) - set(modalities))
    if unknown:
        raise ValueError(f"train.unimodal_reference names {unknown}, not modalities of this data {list(modalities)}; "
                         "name its modalities")


def logged_keys(history: Sequence[Mapping]) -> list[str]:
    """Every key of the records, in order of appearance (an epoch hook may log at some epochs only)."""
    return list(dict.fromkeys(key for record in history for key in record))


def per_run(history: Sequence[Mapping], key: str) -> np.ndarray:
    """``[epochs, runs]`` values of ``key`` in the records (NaN at epochs that did not log it)."""
    runs = next(np.size(r[key]) for r in history if key in r)
    return np.asarray([np.reshape(r[key], runs) if key in r else np.full(runs, np.nan) for r in history], float)


def modality_curves(history: Sequence[Mapping], prefix: str, modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """``{modality: [epochs, runs]}`` of the records' ``<prefix><modality>`` entries (the modalities they hold)."""
    keys = logged_keys(history)
    return {m: per_run(history, prefix + m) for m in modalities if prefix + m in keys}


def utilisation(accuracy: Mapping[str, np.ndarray], reference: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Each referenced modality's accuracy over its unimodal reference (1: as good as trained alone)."""
    return {m: a / reference[m] for m, a in accuracy.items() if m in reference}


def gap(accuracy: Mapping[str, np.ndarray], reference: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Each referenced modality's unimodal reference minus its accuracy (0: as good as trained alone)."""
    return {m: reference[m] - a for m, a in accuracy.items() if m in reference}


def method_logs(history: Sequence[Mapping], modalities: Sequence[str]) -> dict[str, dict[str, str]]:
    """The records' method and transform logs grouped per quantity: ``{"train/coef": {"a": "train/coef/a", …}}``.

    A key whose last part is a modality, or that has three parts or more (DMIL's ``train/gate/R``),
    belongs to the quantity before its last part; any other key is a quantity of its own (under the
    name ``""``). Losses, evaluations and probes are left out.
    """
    groups: dict[str, dict[str, str]] = {}
    for key in logged_keys(history):
        if key.startswith(SKIPPED_LOGS):
            continue
        head, _, last = key.rpartition("/")
        quantity, name = (head, last) if (head and last in modalities) or "/" in head else (key, "")
        groups.setdefault(quantity, {})[name] = key
    return groups


@dataclasses.dataclass
class Panel:
    """One plot: ``series`` maps a line-style name (a modality, or ``""``) to ``[epochs, runs]`` values.

    Attributes:
      title: the panel's title.
      series: style name -> per-epoch, per-run values.
      ylabel: the y-axis label.
      hlines: style name -> a horizontal reference line (drawn grey in that style).
    """

    title: str
    series: dict[str, np.ndarray]
    ylabel: str = ""
    hlines: dict[str, float] = dataclasses.field(default_factory=dict)


def draw_panels(panels: Sequence[Panel], epochs: Sequence[int], labels: Sequence[str], *, title: str = "",
                columns: int = 4, note: str = ""):
    """A matplotlib figure of ``panels`` on a grid: a colour per run (labelled in the figure's legend), a line
    style per modality (labelled in each panel), whole epochs on the x axes."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.6 * columns + 1.6, 2.9 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colors = [palette(i % palette.N) for i in range(len(labels))]
    styles: dict[str, tuple[str, str]] = {"": STYLES[0]}
    for ax, panel in zip(axes.flat, panels):
        sparse = any(np.isnan(v).any() for v in panel.series.values())  # markers show isolated values
        for name, values in panel.series.items():
            style, marker = styles.setdefault(name, STYLES[(len(styles) - 1) % len(STYLES)])
            for run, color in enumerate(colors):
                ax.plot(epochs, values[:, run], color=color, ls=style, lw=1.2, alpha=0.9,
                        marker=marker if sparse else None, ms=3.5)
        for name, level in panel.hlines.items():
            ax.axhline(level, color="0.45", ls=styles.get(name, STYLES[0])[0], lw=0.9)
        named = [n for n in panel.series if n]
        if named:
            handles = [Line2D([], [], color="k", ls=styles[n][0], marker=styles[n][1] if sparse else None, ms=3.5,
                              label=n) for n in named]
            if any(panel.hlines):
                handles.append(Line2D([], [], color="0.45", label="trained alone"))
            ax.legend(handles=handles, fontsize=7, loc="best")
        ax.set_title(panel.title, fontsize=9)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.legend(handles=[Line2D([], [], color=c, lw=2, label=label) for c, label in zip(colors, labels)],
               loc="outside right upper", fontsize=8, title="runs", title_fontsize=8)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    return fig


def save_png(fig, path: str) -> None:
    """Writes ``fig`` to ``path`` as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    write_atomic(path, buffer.getvalue())


def curve_panels(history: Sequence[Mapping], keys: Sequence[str]) -> list[Panel]:
    """A panel per key the records hold."""
    logged = logged_keys(history)
    return [Panel(key, {"": per_run(history, key)}) for key in keys if key in logged]


def modality_panels(history: Sequence[Mapping], modalities: Sequence[str], source: str, metric: str = "acc",
                    reference: Mapping[str, float] | None = None) -> list[Panel]:
    """Per source of per-modality values (the evaluation's ``<metric>/<m>``, logged linear probes): the values
    over epochs, then, with a ``reference``, the utilisation and the gap of the referenced modalities."""
    reference = dict(reference or {})
    panels = []
    for prefix, what in ((f"val/{metric}/", source), ("probe/val/", PROBE)):
        values = modality_curves(history, prefix, modalities)
        if not values:
            continue
        unit = "accuracy" if metric == "acc" else metric
        panels.append(Panel(f"val {metric} per modality: {what}", values, ylabel=unit,
                            hlines={m: reference[m] for m in values if m in reference}))
        if reference and utilisation(values, reference):
            panels.append(Panel(f"utilisation ({what}):\n{metric} / {metric} trained alone",
                                utilisation(values, reference), ylabel="utilisation", hlines={"": 1.0}))
            panels.append(Panel(f"gap ({what}):\n{metric} trained alone − {metric}", gap(values, reference),
                                ylabel="gap", hlines={"": 0.0}))
    return panels


def log_panels(history: Sequence[Mapping], modalities: Sequence[str]) -> list[Panel]:
    """A panel per logged method quantity (:func:`method_logs`), a line style per modality."""
    return [Panel(quantity, {name: per_run(history, key) for name, key in keys.items()})
            for quantity, keys in method_logs(history, modalities).items()]


def write_figures(folder: str, history: Sequence[Mapping], labels: Sequence[str], *, method: Method,
                  modalities: Sequence[str], metric: str, model: Any = None,
                  reference: Mapping[str, float] | None = None) -> list[str]:
    """Writes ``curves.png``, ``modalities.png`` and ``method_logs.png`` (those with something to show) to ``folder``.

    Args:
      folder: the run folder.
      history: the epoch records (``metrics.jsonl``).
      labels: a legend label per run (:func:`~jaxmm.train.outputs.run_labels`).
      method: the trained method (its name titles the figures; :func:`modality_source`).
      modalities: the data's modalities.
      metric: the task's main metric (``acc`` or ``mae``).
      model: the model config (:func:`modality_source`).
      reference: ``train.unimodal_reference``.

    Returns:
      The names of the files written.
    """
    epochs = [r["epoch"] for r in history]
    subkeys = [k for k in logged_keys(history) if k.startswith(f"val/{metric}/")][:4]
    logs = log_panels(history, modalities)
    figures = {
        "curves.png": (curve_panels(history, ["train/loss", f"val/{metric}", *subkeys]), "learning curves", ""),
        "modalities.png": (modality_panels(history, modalities, modality_source(method, model), metric, reference),
                           "per-modality validation", ""),
        "method_logs.png": (logs, "method and transform logs", "train/*: means over each epoch's steps"
                            + ("; the others: logged by the epoch hook" if any(not p.title.startswith("train/")
                                                                               for p in logs) else "")),
    }
    written = []
    for name, (panels, what, note) in figures.items():
        if panels:
            fig = draw_panels(panels, epochs, labels, title=f"{method.name}: {what}",
                              columns=3 if name == "modalities.png" else 4, note=note)
            save_png(fig, os.path.join(folder, name))
            written.append(name)
    return written
