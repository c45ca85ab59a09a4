"""Modality imbalance: does joint training under-train the weak modality, and do balancing methods help?

Every method trains 3 seeds (one vmapped program) on the synthetic ``imbalance``
task (a fast ``strong`` modality that resolves the coarse class, a slow ``weak``
one needed for the fine class; see :mod:`jaxmm.data.synthetic.imbalance`) and,
when the FSDD recordings are present, on ``avdigits``. Reported per method:
fused test accuracy, each modality's accuracy as a linear probe on its frozen
encoder features (:mod:`jaxmm.metrics.probe`, fitted on the train split) and as
its unimodal head (when the method has one). ``unimodal`` runs once per modality
and gives the reference: the same modality trained alone. The imbalance measure
over training is each modality's validation probe accuracy divided by the final
one of that modality trained alone ("utilisation"), one panel per method.

    jaxmm experiment imbalance [--methods vanilla,unimodal,ogm_ge] [--seeds 0,1,2] [--protocol small|full]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import warnings

import numpy as np

from jaxmm.experiments._common import Timer, finish, mean_std_table, output_dir, parse_names, pyplot, save_figure
from jaxmm.data.registry import default_cache_dir, load_dataset
from jaxmm.data.synthetic import imbalance
from jaxmm.methods import EpochHook, Method, available, get_method
from jaxmm.metrics.probe import probe_accuracy
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.config import OptimizerConfig, TrainConfig
from jaxmm.train.loop import fit

DEFAULT_METHODS = ("vanilla", "unimodal", "ensemble", "ogm_ge", "agm", "mmpareto", "inforeg", "redreg", "mla", "dnr")
# small: a few minutes on a shared 2-core CPU; full: larger splits and longer training.
PROTOCOLS = {
    "small": {"epochs": 30, "sizes": {"train": 1000, "val": 500, "test": 10000}, "avdigits_epochs": 30},
    "full": {"epochs": 100, "sizes": {"train": 5000, "val": 1000, "test": 20000}, "avdigits_epochs": 100},
}
MODEL = MLPModelConfig()
OPTIMIZER = OptimizerConfig()
BATCH_SIZE = 64
PROBE_L2 = 1e-3
SPLITS_PROBED = ("val", "test")


def resolve_methods(text: str | None, registered) -> list[str]:
    """The methods to run: ``text`` (comma-separated, all must be registered) or the registered defaults.

    Raises:
      SystemExit: ``text`` names an unregistered method (the message lists the registered ones).
    """
    registered = sorted(registered)
    if text:
        names = [m for m in text.split(",") if m]
        unknown = [m for m in names if m not in registered]
        if unknown:
            raise SystemExit(f"method(s) {unknown} are not registered; registered: {registered}")
        return names
    missing = [m for m in DEFAULT_METHODS if m not in registered]
    if missing:
        warnings.warn(f"default method(s) {missing} are not registered yet; running without them", stacklevel=2)
    return [m for m in DEFAULT_METHODS if m in registered]


def expand(name: str, modalities) -> list[tuple[str, Method]]:
    """``(label, method)`` runs of a method name; ``unimodal`` gives one run per modality."""
    if name == "unimodal":
        return [(f"unimodal[{m}]", get_method("unimodal", modality=m)) for m in modalities]
    return [(name, get_method(name))]


def with_probe(method: Method, num_classes: int, l2: float = PROBE_L2) -> Method:
    """``method`` whose epoch-end hook also logs ``probe/<split>/<modality>`` per run into the epoch record.

    The probe is fitted on the train split's eval-mode encoder features of each
    run and scored on ``val`` and ``test`` (:func:`jaxmm.metrics.probe.probe_accuracy`).
    """
    inner = method.epoch_end

    def update(run, ctx):
        train = ctx.outputs["train"].features
        logs = {f"probe/{split}/{m}": probe_accuracy(train[m], ctx.labels["train"], f, ctx.labels[split],
                                                     num_classes, l2)
                for split in SPLITS_PROBED for m, f in ctx.outputs[split].features.items()}
        if inner is not None:  # the probes read the features before the method's own hook acts
            run = inner.update(run, ctx)
        return run._replace(logs={**run.logs, **logs})

    def reads(epoch, num_epochs):
        return tuple(dict.fromkeys(("train", *SPLITS_PROBED, *(inner.reads(epoch, num_epochs) if inner else ()))))

    hook = EpochHook(update, reads) if inner is None else EpochHook(update, reads, inner.reset_optimizer)
    return dataclasses.replace(method, epoch_end=hook)


def run_dataset(tag: str, splits, methods, seeds, epochs: int, out_path: str, progress: bool = True,
                optimizer: OptimizerConfig = OPTIMIZER) -> dict:
    """Trains every method on one dataset; returns what :func:`train_runs` returns."""
    runs = [run for name in methods for run in expand(name, splits[0].modalities)]
    return train_runs(tag, splits, runs, seeds, epochs, out_path, progress, optimizer)


def train_runs(tag: str, splits, runs, seeds, epochs: int, out_path: str | None, progress: bool = True,
               optimizer: OptimizerConfig = OPTIMIZER, hparams: dict | None = None) -> dict:
    """Trains ``(label, method)`` runs (all seeds of one run vmapped) with the probe logged every epoch.

    Args:
      hparams: ``{label: overrides}`` applied to every seed of that run (e.g. ``{"frozen": {"alpha": 20.0}}``).

    Returns:
      ``{label: {"test": per-seed test metrics with probe/<m>, "val": per-seed validation metrics of the
      reported epoch, "curves": {m: [R, E] val probe accuracy},
      "scores": {m: [R, E] mean train score/<m>} (methods that log one, e.g. OGM-GE)}}``.
    """
    modalities = splits[0].modalities
    results = {}
    for label, method in runs:
        cfg = TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, select="last", checkpoint_every=0,
                          progress=progress)
        overrides = (hparams or {}).get(label)
        res = fit(with_probe(method, splits[0].num_classes), splits, seeds, MODEL, optimizer, cfg,
                  hparams=[overrides] * len(seeds) if overrides else None,
                  run_dir=f"{out_path}/{tag}/{label}" if out_path else None)
        last = res.history[-1]
        test = [{**t, **{f"probe/{m}": last[f"probe/test/{m}"][r] for m in modalities
                         if f"probe/test/{m}" in last}} for r, t in enumerate(res.test)]
        results[label] = {"test": test, "val": res.val,
                          "curves": _per_epoch(res.history, "probe/val/", modalities),
                          "scores": _per_epoch(res.history, "train/score/", modalities)}
    return results


def _per_epoch(history, prefix: str, modalities) -> dict:
    """``{m: [R, E]}`` of the per-run history entries ``<prefix><m>`` that exist."""
    return {m: np.asarray([h[prefix + m] for h in history]).T.tolist()
            for m in modalities if prefix + m in history[-1]}


def table(results: dict, modalities) -> str:
    """Markdown: fused accuracy, probe and head accuracy per modality, and the probe gap to ``unimodal``."""
    cols = ["fused acc"] + [f"probe {m}" for m in modalities] + [f"head {m}" for m in modalities] \
        + [f"probe gap {m}" for m in modalities]
    values = {}
    for label, res in results.items():
        for t in res["test"]:
            values.setdefault((label, "fused acc"), []).append(t["acc"])
            for m in modalities:
                if f"probe/{m}" in t:
                    values.setdefault((label, f"probe {m}"), []).append(t[f"probe/{m}"])
                if f"acc/{m}" in t:
                    values.setdefault((label, f"head {m}"), []).append(t[f"acc/{m}"])
    for m in modalities:
        ref = values.get((f"unimodal[{m}]", f"probe {m}"))
        for label in results:
            mine = values.get((label, f"probe {m}"))
            if ref and mine and not label.startswith("unimodal["):
                values[(label, f"probe gap {m}")] = list(np.asarray(mine) - np.asarray(ref))
    return mean_std_table(list(results), cols, values, "method")


def utilisation(results: dict, modalities) -> dict:
    """``{label: {modality: [R, E] probe val accuracy / final probe val accuracy of unimodal[modality]}}``."""
    out = {}
    for label, res in results.items():
        for m in modalities:
            ref = results.get(f"unimodal[{m}]")
            if ref is None or m not in res["curves"]:
                continue
            final = np.mean(np.asarray(ref["curves"][m])[:, -1])
            out.setdefault(label, {})[m] = np.asarray(res["curves"][m]) / final
    return out


def plot(results: dict, modalities, path: str, title: str) -> None:
    """One panel per method: each modality's probe accuracy over epochs relative to the modality trained alone.

    A modality without a ``unimodal`` reference run is drawn as raw probe accuracy (dashed).
    """
    plt = pyplot()
    util = utilisation(results, modalities)
    labels = list(results)
    cols = min(4, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, label in zip(axes.flat, labels):
        for color, m in zip(("C0", "C3", "C2", "C1"), modalities):
            relative = m in util.get(label, {})
            if not relative and m not in results[label]["curves"]:
                continue
            curves = util[label][m] if relative else np.asarray(results[label]["curves"][m])
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(epochs, mean, color=color, ls="-" if relative else "--", label=m if relative else f"{m} (raw)")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("probe acc / alone")
    fig.suptitle(title)
    save_figure(fig, path)


def load_avdigits(seeds):
    """avdigits splits per seed, or ``None`` (with a printed reason) when the recordings are absent."""
    try:
        return [load_dataset("avdigits", s, cache_dir=str(default_cache_dir())) for s in seeds]
    except FileNotFoundError as e:
        print(f"\nskipping avdigits: {e}")
        return None


def main(argv=None) -> dict:
    """Command-line entry: trains, prints the tables, writes figures, ``results.json`` and ``summary.md``."""
    p = argparse.ArgumentParser(prog="jaxmm experiment imbalance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated registered methods (default: those of {list(DEFAULT_METHODS)} registered)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="small")
    p.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs (both datasets)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=OPTIMIZER.name,
                   help="adam (default) or sgd with momentum 0.9 (the GeWu-Lab protocols' optimiser)")
    p.add_argument("--lr", type=float, default=OPTIMIZER.lr)
    p.add_argument("--datasets", default="synthetic,avdigits", help="subset of synthetic,avdigits")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--figure-dir", default=None, help="also copy the figures there (e.g. docs/figures)")
    args = p.parse_args(argv)
    methods = resolve_methods(args.methods, available())
    seeds = [int(s) for s in args.seeds.split(",")]
    proto = PROTOCOLS[args.protocol]
    datasets = parse_names(args.datasets, ("synthetic", "avdigits"), "dataset")
    out = output_dir(args.out_dir, "imbalance")
    timer = Timer()
    sections, summary = {}, {"args": vars(args), "methods": methods, "seeds": seeds, "datasets": {}}
    config = imbalance.ImbalanceConfig()
    for tag in datasets:
        if tag == "synthetic":
            splits = [imbalance.splits(s, config, proto["sizes"]) for s in seeds]
            epochs = args.epochs or proto["epochs"]
            bayes = {"+".join(ms): imbalance.bayes_accuracy(config, ms)
                     for ms in (("strong",), ("weak",), ("strong", "weak"))}
        else:
            splits, epochs, bayes = load_avdigits(seeds), args.epochs or proto["avdigits_epochs"], None
            if splits is None:
                sections["avdigits"] = "skipped: FSDD recordings not found (see the printed message)."
                continue
        modalities = splits[0].modalities
        results = run_dataset(tag, splits, methods, seeds, epochs, out.path,
                              optimizer=dataclasses.replace(OPTIMIZER, name=args.optimizer, lr=args.lr))
        text = table(results, modalities)
        if bayes:
            text += "\n\nBayes-optimal accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in bayes.items())
        figure = out.file(f"imbalance_{tag}.png")
        plot(results, modalities, figure, f"{tag}: probe accuracy / same modality trained alone ({epochs} epochs)")
        if args.figure_dir:
            shutil.copy(figure, args.figure_dir)
        sections[f"{tag} ({epochs} epochs, seeds {seeds})"] = text
        summary["datasets"][tag] = {"epochs": epochs, "bayes": bayes, "modalities": list(modalities),
                                    "results": results}
        print(f"\n{tag} — test accuracy, mean ± std over seeds {seeds} ({epochs} epochs)\n{text}")
    finish(out, "imbalance", argv, "Modality imbalance: fused and per-modality test accuracy (mean ± std over seeds)",
           sections, summary, timer)
    return summary


if __name__ == "__main__":
    main()
