"""SynIB's Table 2: accuracy on all test examples and on the synergy subset, UR-Funny, MUStARD and MOSI.

Every method trains under the dataset's SynIB protocol (``urfunny_synib``, ``mustard_synib``,
``mosi_synib`` of :mod:`jaxmm.train.protocols`: FactorCL encoders of vision and text pre-trained
unimodally, concat -> 64 -> head, the per-dataset SynIB flags) on the MultiBench / FactorCL feature
pickles, all seeds of a method vmapped in one program. The unimodal predictors are the ``unimodal``
method on each modality with the configuration the fused runs pre-train with
(:func:`jaxmm.train.pretrain.pretrain_config`: same model, optimiser, data and seeds,
``train.pretrain_epochs`` epochs; ``train.epochs`` when that is 0). The test examples every one of
them misclassifies (2 modalities × 3 seeds) form the synergy subset
(:func:`jaxmm.metrics.synergy_subset.synergy_subset`, rule ``all``; the looser ``majority`` rule is
reported too). Reported per method, mean ± std over seeds in %: accuracy on all test examples, on
the synergy subset and on the majority-rule subset, beside the paper's numbers. ``--epochs`` sets
the fused runs' epochs; ``--set train.pretrain_epochs=N`` the pre-training's and the unimodal
predictors'.

Outputs under ``<out-dir>/multibench/``: ``results.json``, ``summary.md`` (the table), the figure
``multibench.png``, per dataset the run folders and ``predictions.npz`` (test ``labels``, every
run's predicted classes ``pred/<label>`` ``[seeds, N]`` and the masks ``subset/all``,
``subset/majority``).

    jaxmm experiment multibench --data-dir PATH [--datasets urfunny,mustard,mosi]
                                [--methods vanilla,synib-random] [--seeds 0,1,2]
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxmm.data.readers.multibench import FILES
from jaxmm.data.registry import default_cache_dir
from jaxmm.experiments._common import (Timer, configure, experiment_parser, finish, output_dir, parse, parse_names,
                                       pyplot, save_figure)
from jaxmm.metrics.classification import accuracy, predict_labels
from jaxmm.metrics.synergy_subset import RULES, synergy_subset
from jaxmm.train.batching import stack_runs
from jaxmm.train.config import RunConfig
from jaxmm.train.pretrain import pretrain_config
from jaxmm.train.protocols import apply_protocol
from jaxmm.train.runs import ProgramResult
from jaxmm.train.runs import run as train


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset of the table.

    Attributes:
      title: its name in the paper's table.
      protocol: its training protocol.
      files: the ``(reader dataset, variant)`` pairs accepted, in order of preference (their file
        names are :data:`jaxmm.data.readers.multibench.FILES`).
    """

    title: str
    protocol: str
    files: tuple[tuple[str, str], ...]


DATASETS = {
    "urfunny": Dataset("UR-Funny", "urfunny_synib", (("humor", "raw"),)),
    "mustard": Dataset("MUStARD", "mustard_synib", (("sarcasm", "raw"),)),
    "mosi": Dataset("MOSI", "mosi_synib", (("mosi", "mult"), ("mosi", "raw"))),
}
METHODS = {  # shown name -> (registry name, method options)
    "ensemble": ("ensemble", {}),
    "vanilla": ("vanilla", {}),
    "dnr": ("dnr", {}),
    "mmpareto": ("mmpareto", {}),
    "reconboost": ("reconboost", {}),
    "mcr": ("mcr", {}),
    "synib-random": ("synib", {"mask": "random"}),
    "synib-learned": ("synib", {"mask": "learned"}),
}
# SynIB Table 2 (mean over 3 seeds, %): method -> dataset -> (all, synergy subset).
PAPER = {
    "ensemble": {"urfunny": (61.3, 0.9), "mustard": (58.0, 45.1), "mosi": (72.8, 0.0)},
    "vanilla": {"urfunny": (62.3, 19.2), "mustard": (57.5, 25.4), "mosi": (72.8, 31.4)},
    "dnr": {"urfunny": (63.6, 15.2), "mustard": (54.5, 16.5), "mosi": (73.0, 24.1)},
    "mmpareto": {"urfunny": (62.8, 15.9), "mustard": (58.8, 40.1), "mosi": (72.6, 25.1)},
    "reconboost": {"urfunny": (63.2, 12.7), "mustard": (57.5, 17.2), "mosi": (74.7, 30.2)},
    "mcr": {"urfunny": (62.4, 11.0), "mustard": (60.3, 39.6), "mosi": (73.7, 29.0)},
    "synib-random": {"urfunny": (63.6, 15.4), "mustard": (62.2, 47.5), "mosi": (75.0, 35.3)},
    "synib-learned": {"urfunny": (62.7, 22.8), "mustard": (64.1, 52.9), "mosi": (75.3, 37.2)},
}
SOURCES = """They are the MultiBench affective-computing pickles, the frozen features FactorCL and SynIB train on:
  humor.pkl (UR-Funny), sarcasm.pkl (MUStARD), mosi_raw.pkl (CMU-MOSI) from the download links of
  https://github.com/pliang279/MultiBench (README, 'Affective Computing'); for MOSI also the MulT-aligned
  mosi_data.pkl (https://github.com/yaohungt/Multimodal-Transformer), the file SynIB's FactorCL loader reads.
Put them in one folder and pass it as --data-dir (--datasets runs a subset)."""
COLUMNS = ("all", "syn", "syn (majority)")


def locate(data_dir: str, tags) -> dict[str, tuple[str, str]]:
    """``{tag: (pickle path, reader variant)}``: the first accepted file of each dataset found in ``data_dir``.

    Raises:
      SystemExit: a dataset has none of its files (the message lists every path looked for, whether
        it was found, and where the files come from).
    """
    found, lines = {}, []
    for tag in tags:
        for dataset, variant in DATASETS[tag].files:
            path = os.path.join(os.path.abspath(data_dir), FILES[(dataset, variant)])
            present = os.path.isfile(path)
            lines.append(f"  {DATASETS[tag].title}: {path}" + ("" if present else "  (missing)"))
            if present and tag not in found:
                found[tag] = (path, variant)
    if len(found) < len(tags):
        raise SystemExit("jaxmm experiment multibench: data files missing, nothing was trained. Looked for:\n"
                         + "\n".join(lines) + "\n" + SOURCES)
    return found


def run_config(tag: str, path: str, variant: str, label: str, method: str, options: dict, seeds,
               epochs: int | None, overrides) -> RunConfig:
    """A method's run on a dataset under the dataset's protocol (which adds the method's own flags), with the
    seeds, epochs and ``--set`` overrides applied after it."""
    cfg = RunConfig(name=label, method=method, method_options=dict(options), dataset="multibench",
                    dataset_options={"dataset": tag, "variant": variant, "data_dir": path})
    return configure(apply_protocol(cfg, DATASETS[tag].protocol), seeds=seeds, epochs=epochs, overrides=overrides)


def unimodal_config(fused: RunConfig, modality: str) -> RunConfig:
    """The run of one unimodal predictor: the ``unimodal`` pre-training of ``fused``
    (:func:`~jaxmm.train.pretrain.pretrain_config`: same model, optimiser, data and seeds, ``train.pretrain_epochs``
    epochs), as long as ``fused`` itself when it pre-trains nothing."""
    if not fused.train.pretrain_epochs:
        fused = dataclasses.replace(fused, train=dataclasses.replace(fused.train, pretrain_epochs=fused.train.epochs))
    return dataclasses.replace(pretrain_config(fused, modality), name=f"unimodal[{modality}]")


def predicted_classes(program: ProgramResult, chunk: int) -> np.ndarray:
    """``[runs, N]`` predicted test classes of a program's selected parameters.

    Raises:
      RuntimeError: their accuracy differs from the one the run reported (they would not be its predictions).
    """
    fit = program.fit
    state = fit.state._replace(params=fit.params, method_state=fit.method_state)
    scores, _ = fit.trainer.predict(state, stack_runs([s.test for s in program.splits]), chunk)
    pred = np.stack([predict_labels(s) for s in scores])
    for r, (p, split) in enumerate(zip(pred, program.splits)):
        if not np.isclose(accuracy(p, split.test.label), fit.test[r]["acc"], atol=1e-6):
            raise RuntimeError(f"{program.config.name}: recomputed test predictions of run {r} disagree with its "
                               "reported accuracy")
    return pred


def run_dataset(configs: list[RunConfig], out_path: str, cache_dir: str,
                overwrite: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Trains runs (each config's name is its label and its folder under ``out_path``) of one dataset.

    Returns:
      (test labels ``[N]``, ``{label: [seeds, N] predicted test classes}``).
    """
    preds, labels = {}, None
    for cfg in configs:
        (program,) = train(cfg, os.path.join(out_path, cfg.name), data_options={"cache_dir": cache_dir},
                           overwrite=overwrite)
        preds[cfg.name] = predicted_classes(program, cfg.train.eval_batch_size)
        labels = program.splits[0].test.label
    return labels, preds


def scores(labels: np.ndarray, pred: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per-seed accuracy in % on all examples (``all``) and on each subset (``syn``, ``syn (majority)``)."""
    out = {"all": [100 * accuracy(p, labels) for p in pred]}
    for rule, mask in masks.items():
        out["syn" if rule == "all" else f"syn ({rule})"] = [100 * accuracy(p[mask], labels[mask]) for p in pred]
    return out


def cell(values, paper: float | None) -> str:
    """``mean ± std [paper]`` (``—`` without values; NaN on an empty subset)."""
    v = np.asarray(values, float)
    text = f"{v.mean():.1f} ± {v.std():.1f}" if v.size else "—"
    return text + (f" [{paper:.1f}]" if paper is not None else "")


def table(record: dict, tags) -> str:
    """Markdown: per method and dataset, accuracy on all test examples and on both subsets ([paper value])."""
    cols = [f"{DATASETS[t].title} {c}" for t in tags for c in COLUMNS]
    lines = ["| method | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    labels = list(dict.fromkeys(label for t in tags for label in record[t]["scores"]))
    for label in labels:
        cells = []
        for t in tags:
            res = record[t]["scores"].get(label, {})
            paper = PAPER.get(label, {}).get(t)
            cells += [cell(res.get(c, []), paper[0] if paper and c == "all" else paper[1] if paper and c == "syn"
                           else None) for c in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sizes = "; ".join(f"{DATASETS[t].title}: {record[t]['subset']['all']} ({record[t]['subset']['majority']} by "
                      f"majority) of {record[t]['n_test']}" for t in tags)
    return "\n".join(lines) + f"\n\nSynergy subset sizes: {sizes}. In brackets: SynIB's Table 2."


def plot(record: dict, tags, path: str, title: str) -> None:
    """One panel per dataset: accuracy on all examples and on the synergy subset per method, paper values marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tags), figsize=(5.5 * len(tags), 3.6), squeeze=False)
    for ax, t in zip(axes[0], tags):
        res = record[t]["scores"]
        labels = list(res)
        x = np.arange(len(labels))
        for offset, col, color in ((-0.2, "all", "C0"), (0.2, "syn", "C3")):
            vals = [np.asarray(res[m][col], float) for m in labels]
            ax.bar(x + offset, [v.mean() for v in vals], 0.4, yerr=[v.std() for v in vals], color=color,
                   alpha=0.8, label=f"{col} (ours)")
            paper = [PAPER.get(m, {}).get(t) for m in labels]
            px = [x[i] + offset for i, p in enumerate(paper) if p]
            ax.scatter(px, [p[col != "all"] for p in paper if p], marker="D", color="k" if col == "all" else "C1",
                       zorder=3, s=18, label=f"{col} (paper)")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{DATASETS[t].title} (synergy subset {record[t]['subset']['all']}/{record[t]['n_test']})",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv=None) -> dict:
    """Command-line entry: checks the files, trains, prints the table, writes ``results.json``, ``summary.md`` and
    the figure."""
    p = experiment_parser("multibench", __doc__, epochs=None)
    p.add_argument("--data-dir", required=True, help="folder holding humor.pkl, sarcasm.pkl and mosi_data.pkl or "
                                                     "mosi_raw.pkl")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"subset of {','.join(DATASETS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--cache-dir", default=None, help="preprocessing cache (default $JAXMM_CACHE_DIR or "
                                                     "~/.cache/jaxmm)")
    args = parse(p, argv)
    tags = parse_names(args.datasets, DATASETS, "dataset")
    methods = parse_names(args.methods, METHODS)
    files = locate(args.data_dir, tags)
    out = output_dir(args.out_dir, "multibench", args.overwrite)
    cache_dir = args.cache_dir or str(default_cache_dir())
    timer = Timer()
    record = {"args": vars(args), "seeds": list(args.seeds)}
    for t in tags:
        path, variant = files[t]
        configs = {label: run_config(t, path, variant, label, *METHODS[label], args.seeds, args.epochs, args.set)
                   for label in methods}
        fused = run_config(t, path, variant, "vanilla", *METHODS["vanilla"], args.seeds, args.epochs, args.set)
        modalities = fused.modalities
        unimodal = [unimodal_config(fused, m) for m in modalities]
        folder = os.path.join(out.path, t)
        labels, preds = run_dataset(unimodal + list(configs.values()), folder, cache_dir, args.overwrite)
        masks = {rule: synergy_subset({m: preds[f"unimodal[{m}]"] for m in modalities}, labels, rule)
                 for rule in RULES}
        np.savez(os.path.join(folder, "predictions.npz"), labels=labels,
                 **{f"pred/{k}": v for k, v in preds.items()}, **{f"subset/{k}": v for k, v in masks.items()})
        record[t] = {"file": path, "epochs": fused.train.epochs, "unimodal_epochs": unimodal[0].train.epochs,
                     "modalities": list(modalities), "n_test": len(labels),
                     "subset": {rule: int(m.sum()) for rule, m in masks.items()},
                     "scores": {label: scores(labels, p, masks) for label, p in preds.items()},
                     "paper": {m: PAPER[m][t] for m in methods}}
    text = table(record, tags)
    plot(record, tags, out.file("multibench.png"), f"SynIB Table 2, seeds {list(args.seeds)}")
    print(f"\nSynIB Table 2 — test accuracy (%), mean ± std over seeds {list(args.seeds)}\n{text}")
    finish(out, "multibench", argv, "SynIB Table 2: all test examples and the synergy subset", {"Table 2": text},
           record, timer)
    return record


if __name__ == "__main__":
    main()
