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

import dataclasses
import shutil
import warnings
from typing import Callable

import numpy as np

from jaxmm.data.registry import default_cache_dir, load_dataset
from jaxmm.data.synthetic import imbalance
from jaxmm.experiments._common import (Timer, configure, experiment_parser, finish, mean_std_table, output_dir, parse,
                                       parse_names, pyplot, save_figure)
from jaxmm.methods import EpochHook, Method, available
from jaxmm.metrics.probe import probe_accuracy
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig
from jaxmm.train.runs import registry_method
from jaxmm.train.runs import run as train

DEFAULT_METHODS = ("vanilla", "unimodal", "ensemble", "ogm_ge", "agm", "mmpareto", "inforeg", "redreg", "mla", "dnr")
# small: a few minutes on a shared 2-core CPU; full: larger splits and longer training.
PROTOCOLS = {
    "small": {"epochs": 30, "sizes": {"train": 1000, "val": 500, "test": 10000}, "avdigits_epochs": 30},
    "full": {"epochs": 100, "sizes": {"train": 5000, "val": 1000, "test": 20000}, "avdigits_epochs": 100},
}
BASE = RunConfig(model=MLPModelConfig(), optimizer=OptimizerConfig(),
                 train=TrainConfig(batch_size=64, select="last", checkpoint_every=0))
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


def expand(name: str, modalities) -> dict[str, dict]:
    """``{label: RunConfig fields}`` of a method name; ``unimodal`` gives one run per modality."""
    if name == "unimodal":
        return {f"unimodal[{m}]": {"method": "unimodal", "method_options": {"modality": m}} for m in modalities}
    return {name: {"method": name}}


def dataset(tag: str, protocol: dict, task: imbalance.ImbalanceConfig = imbalance.ImbalanceConfig()) -> dict:
    """The RunConfig fields of a dataset: ``synthetic`` (the imbalance task at the protocol's sizes) or
    ``avdigits``."""
    if tag == "avdigits":
        return {"dataset": "avdigits"}
    return {"dataset": "imbalance", "dataset_options": {"sizes": protocol["sizes"], **dataclasses.asdict(task)}}


def modalities_of(cfg: RunConfig) -> tuple[str, ...]:
    """The modalities of a config's dataset (its first seed's splits)."""
    return load_dataset(cfg.dataset, cfg.seeds[0], **cfg.dataset_options, **loader_options(cfg)).train.modalities


def loader_options(cfg: RunConfig) -> dict:
    """``cache_dir`` for file-backed datasets (avdigits), nothing for generated ones."""
    return {"cache_dir": str(default_cache_dir())} if cfg.dataset == "avdigits" else {}


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


def run_dataset(base: RunConfig, methods, out_path: str | None, overwrite: bool = False) -> dict:
    """Trains every method on ``base``'s dataset and seeds; returns what :func:`train_runs` returns."""
    runs = {label: (fields, None) for name in methods for label, fields in expand(name, modalities_of(base)).items()}
    return train_runs(base, runs, out_path, overwrite)


def train_runs(base: RunConfig, runs: dict[str, tuple[dict, Callable[[Method], Method] | None]],
               out_path: str | None, overwrite: bool = False) -> dict:
    """Trains labelled runs (all seeds of one run vmapped) with the probe logged every epoch.

    Args:
      base: the dataset, seeds, model, optimiser and loop every run shares.
      runs: ``{label: (RunConfig fields, wrap)}``: the fields (``method``, ``method_options``,
        ``hparams``) replace ``base``'s; ``wrap`` (or ``None``) changes the registry's method.
      out_path: run folders go to ``<out_path>/<label>`` (``None``: no files).
      overwrite: replace runs an earlier invocation left there.

    Returns:
      ``{label: {"test": per-seed test metrics with probe/<m>, "val": per-seed validation metrics of the
      reported epoch, "curves": {m: [R, E] val probe accuracy},
      "scores": {m: [R, E] mean train score/<m>} (methods that log one, e.g. OGM-GE)}}``.
    """
    results = {}
    for label, (fields, wrap) in runs.items():
        def build(cfg, splits, wrap=wrap):
            method = registry_method(cfg, splits)
            return with_probe(wrap(method) if wrap else method, splits.num_classes)

        cfg = dataclasses.replace(base, name=label, **fields)
        (program,) = train(cfg, f"{out_path}/{label}" if out_path else None, build=build,
                           data_options=loader_options(cfg), overwrite=overwrite)
        res, modalities = program.fit, program.splits[0].modalities
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


def avdigits_available() -> bool:
    """Whether the FSDD recordings are found (else prints why avdigits is skipped)."""
    from jaxmm.data.avdigits import find_recordings

    try:
        find_recordings(None)
        return True
    except FileNotFoundError as e:
        print(f"\nskipping avdigits: {e}")
        return False


def main(argv=None) -> dict:
    """Command-line entry: trains, prints the tables, writes figures, ``results.json`` and ``summary.md``."""
    p = experiment_parser("imbalance", __doc__, epochs=None)
    p.add_argument("--methods", default=None,
                   help=f"comma-separated registered methods (default: those of {list(DEFAULT_METHODS)} registered)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="small")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=BASE.optimizer.name,
                   help="adam (default) or sgd with momentum 0.9 (the GeWu-Lab protocols' optimiser)")
    p.add_argument("--lr", type=float, default=BASE.optimizer.lr)
    p.add_argument("--datasets", default="synthetic,avdigits", help="subset of synthetic,avdigits")
    p.add_argument("--figure-dir", default=None, help="also copy the figures there (e.g. docs/figures)")
    args = parse(p, argv)
    methods = resolve_methods(args.methods, available())
    seeds = list(args.seeds)
    proto = PROTOCOLS[args.protocol]
    datasets = parse_names(args.datasets, ("synthetic", "avdigits"), "dataset")
    out = output_dir(args.out_dir, "imbalance", args.overwrite)
    timer = Timer()
    sections, summary = {}, {"args": vars(args), "methods": methods, "seeds": seeds, "datasets": {}}
    config = imbalance.ImbalanceConfig()
    optimizer = dataclasses.replace(BASE.optimizer, name=args.optimizer, lr=args.lr)
    for tag in datasets:
        if tag == "avdigits" and not avdigits_available():
            sections["avdigits"] = "skipped: FSDD recordings not found (see the printed message)."
            continue
        epochs = args.epochs or proto["epochs" if tag == "synthetic" else "avdigits_epochs"]
        base = configure(BASE, seeds=seeds, epochs=epochs, overrides=args.set, optimizer=optimizer,
                         **dataset(tag, proto, config))
        bayes = None if tag == "avdigits" else {"+".join(ms): imbalance.bayes_accuracy(config, ms)
                                                for ms in (("strong",), ("weak",), ("strong", "weak"))}
        modalities = modalities_of(base)
        results = run_dataset(base, methods, f"{out.path}/{tag}", args.overwrite)
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
