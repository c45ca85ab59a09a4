"""BTW on real sequences: does BTW's weighting help regression when an added modality brings only noise?

Data: the avdigits sequence variant (:mod:`jaxmm.data.avdigits`, ``sequence=True``,
``target="value"``): the FSDD recording as a left-padded log-spectrogram sequence
(``audio``, a Transformer encoder, padding rule ``left``) and the paired handwritten digit
as a sequence of its 8 rows (``image``, an LSTM encoder, padding rule ``none``); the target is
the digit's value 0-9 (L1 loss). Two settings: without and with a third modality ``noise``
(``noise_modality=True``: left-padded standard-normal sequences independent of the label,
another Transformer encoder), BTW's case of an added modality that brings more noise
than information.

Methods: ``unimodal`` (each modality alone; audio and image see the same data in both
settings and run once, in the setting without noise; ``unimodal[noise]`` runs with it),
``vanilla`` (joint fusion, concatenation under an MLP head) and ``btw`` (weights refreshed
every 5 epochs as in BTW's regression code, the registry's other defaults: the weights scale
the encoder features, a LayerNorm over their concatenation), each over the seeds as one
vmapped program (Adam, lr 3e-3, batch 64, 40 epochs), the last epoch reported.

Metrics on the test split (held-out speakers), mean ± std over seeds: MAE, Pearson r, and
Acc-2, defined for digit values as the accuracy of the high/low call around the middle
value 4.5: ``(pred > 4.5) == (target > 4.5)``, i.e. digits 0-4 vs 5-9 (no target sits on
4.5; a prediction of exactly 4.5 counts as low). The sentiment Acc-2 conventions of
:mod:`jaxmm.metrics.regression` split at 0 and would be trivial for targets 0-9.

    jaxmm experiment btw-regression [--methods unimodal,vanilla,btw] [--settings clean,noise] [--seeds 0,1,2]
                                    [--epochs N] [--data-dir FSDD_RECORDINGS]
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxmm.data.registry import default_cache_dir
from jaxmm.experiments._common import (Timer, configure, experiment_parser, finish, mean_std_table, output_dir, parse,
                                       parse_names, pyplot, save_figure)
from jaxmm.metrics.regression import regression_report
from jaxmm.models.multimodal import ModelConfig
from jaxmm.train.batching import stack_runs
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig
from jaxmm.train.runs import run as train

METHODS = ("unimodal", "vanilla", "btw")
SETTINGS = {"clean": "without noise", "noise": "with the noise modality"}
MIDDLE = 4.5
"""Acc-2's threshold: the middle of the digit values 0-9."""
METRICS = {"mae": "MAE", "pearson_r": "r", "acc2": "Acc-2"}
WIDTH, MAX_STEPS, EPOCHS = 16, 32, 40
BTW_OPTIONS = {"refresh_every": 5}
"""BTW's weights are refreshed every 5 epochs, as in its regression code (its other options: the registry's)."""
BASE = RunConfig(dataset="avdigits", optimizer=OptimizerConfig(name="adam", lr=3e-3, weight_decay=0.0),
                 train=TrainConfig(batch_size=64, select="last", checkpoint_every=0, tensorboard=False))


def model_config(width: int = WIDTH, modalities=("audio", "image", "noise")) -> ModelConfig:
    """Transformer encoders (1 layer, ``d_model = width``, 2 heads, left padding) for the spectrogram and the
    noise sequences, an LSTM (``hidden = width``, no padding) for the image rows, an MLP head of ``2 * width``."""
    transformer = {"d_model": width, "heads": 2, "layers": 1, "ff": 2 * width, "padding": "left"}
    kinds = {"audio": "transformer", "image": "lstm", "noise": "transformer"}
    options = {"audio": transformer, "image": {"hidden": width, "padding": "none"}, "noise": transformer}
    return ModelConfig(encoders={m: kinds[m] for m in modalities},
                       encoder_options={m: dict(options[m]) for m in modalities}, fusion_hidden=(2 * width,))


def runs_of(methods, setting: str) -> dict[str, dict]:
    """``{label: RunConfig fields}`` of the methods in a setting (``unimodal`` expands per modality it runs)."""
    out = {}
    for name in methods:
        if name == "unimodal":
            for m in (("noise",) if setting == "noise" else ("audio", "image")):
                out[f"unimodal[{m}]"] = {"method": "unimodal", "method_options": {"modality": m}}
        else:
            out[name] = {"method": name, "method_options": dict(BTW_OPTIONS) if name == "btw" else {}}
    return out


def scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE, Pearson r and Acc-2 (high/low around :data:`MIDDLE`) of ``[N]`` predictions of digit values."""
    report = regression_report(pred, target)
    return {"mae": report["mae"], "pearson_r": report["pearson_r"],
            "acc2": float(np.mean((np.asarray(pred) > MIDDLE) == (np.asarray(target) > MIDDLE)))}


def train_setting(base: RunConfig, methods, setting: str, out_path: str, data_options: dict, overwrite: bool) -> dict:
    """Trains every run of one setting; ``{label: {metric: [per-seed value]}}`` on the test split (BTW's runs also
    ``btw_weights``: ``{modality: [per-seed mean train weight at the last epoch]}``)."""
    results = {}
    for label, fields in runs_of(methods, setting).items():
        cfg = dataclasses.replace(base, name=label, **fields)
        (program,) = train(cfg, f"{out_path}/{label}", data_options=data_options, overwrite=overwrite)
        fit = program.fit
        test = stack_runs([s.test for s in program.splits])
        state = fit.state._replace(params=fit.params, method_state=fit.method_state)
        pred, _ = fit.trainer.predict(state, test, cfg.train.eval_batch_size)
        per_seed = [scores(pred[r, :, 0], test.label[r]) for r in range(pred.shape[0])]
        results[label] = {k: [s[k] for s in per_seed] for k in METRICS}
        weights = {k.rsplit("/", 1)[1]: np.asarray(v).tolist() for k, v in fit.history[-1].items()
                   if k.startswith("train/btw_w/")}
        if weights:  # BTW's mean train weight per modality over the last epoch, per seed
            results[label]["btw_weights"] = weights
    return results


def weights_line(results: dict, settings) -> str:
    """One sentence: BTW's final mean weight per modality (mean over seeds) in each setting it ran in ('' if none)."""
    parts = []
    for s in settings:
        weights = results[s].get("btw", {}).get("btw_weights")
        if weights:
            parts.append(f"{SETTINGS[s]}: " + ", ".join(f"{m} {np.mean(w):.3f}" for m, w in weights.items()))
    if not parts:
        return ""
    return "BTW's mean train weight per modality at the last epoch (mean over seeds): " + "; ".join(parts) + "."


def table(results: dict, settings) -> str:
    """Markdown: per method, MAE, r and Acc-2 (mean ± std over seeds) in each setting."""
    labels = list(dict.fromkeys(label for s in settings for label in results[s]))
    cols = [f"{METRICS[k]} ({s})" for s in settings for k in METRICS]
    values = {(label, f"{METRICS[k]} ({s})"): results[s][label][k]
              for s in settings for label in results[s] for k in METRICS}
    return mean_std_table(labels, cols, values, "method")


def plot(results: dict, settings, path: str, title: str) -> None:
    """Test MAE per method (mean, ± std error bars), one bar per setting."""
    plt = pyplot()
    labels = list(dict.fromkeys(label for s in settings for label in results[s]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels), 3.6))
    width = 0.8 / len(settings)
    for j, (s, color) in enumerate(zip(settings, ("C0", "C3"))):
        x = [i for i, label in enumerate(labels) if label in results[s]]
        mae = [np.asarray(results[s][labels[i]]["mae"]) for i in x]
        ax.bar(np.asarray(x) + (j - (len(settings) - 1) / 2) * width, [m.mean() for m in mae], width,
               yerr=[m.std() for m in mae], capsize=3, color=color, label=SETTINGS[s])
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set(ylabel="test MAE (digit value)", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> dict:
    """Command-line entry: trains, prints the table, writes ``results.json``, ``summary.md`` and the figure."""
    p = experiment_parser("btw-regression", __doc__, epochs=EPOCHS)
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {list(METHODS)}")
    p.add_argument("--settings", default=",".join(SETTINGS), help="clean (audio + image), noise (+ the noise "
                                                                   "modality), or both (default)")
    p.add_argument("--data-dir", default=None, help="the FSDD recordings (default: as the avdigits dataset finds them)")
    p.add_argument("--cache-dir", default=str(default_cache_dir()),
                   help="keep the preprocessed avdigits arrays there ('' for none; default %(default)s)")
    p.add_argument("--width", type=int, default=WIDTH, help=f"encoder width (default {WIDTH})")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS,
                   help=f"spectrogram steps of 32 ms kept per recording (default {MAX_STEPS})")
    args = parse(p, argv)
    methods = parse_names(args.methods, METHODS)
    settings = parse_names(args.settings, SETTINGS, "setting")
    if args.width < 2 or args.width % 2 or args.max_steps < 1:
        raise SystemExit(f"--width must be an even int >= 2 (2 attention heads) and --max-steps >= 1; got "
                         f"--width {args.width} --max-steps {args.max_steps}")
    out = output_dir(args.out_dir, "btw-regression", args.overwrite)
    timer = Timer()
    data_options = {k: v for k, v in (("data_dir", args.data_dir), ("cache_dir", args.cache_dir)) if v}
    results = {}
    for setting in settings:
        noise = setting == "noise"
        base = configure(BASE, seeds=args.seeds, epochs=args.epochs, overrides=args.set,
                         dataset_options={"sequence": True, "target": "value", "max_steps": args.max_steps,
                                          "noise_modality": noise},
                         model=model_config(args.width, ("audio", "image", "noise") if noise else ("audio", "image")))
        results[setting] = train_setting(base, methods, setting, f"{out.path}/{setting}", data_options, args.overwrite)
    text = table(results, settings)
    note = ("Test split (held-out speakers lucas, theo), target = the digit's value 0-9, L1 loss; Acc-2 = "
            f"(pred > {MIDDLE}) == (target > {MIDDLE}), digits 0-4 vs 5-9. unimodal[audio] and unimodal[image] "
            "see the same data in both settings and run once. " + weights_line(results, settings)).strip()
    title = f"btw-regression: test MAE, mean ± std over seeds {list(args.seeds)} ({args.epochs} epochs)"
    plot(results, settings, out.file("btw_regression.png"), title)
    with open(out.file("table.md"), "w") as f:
        f.write(text + "\n\n" + note + "\n")
    print(f"\nbtw-regression — test metrics, mean ± std over seeds {list(args.seeds)} ({args.epochs} epochs)\n{text}\n"
          f"\n{note}")
    summary = {"seeds": list(args.seeds), "epochs": args.epochs, "methods": methods, "settings": settings,
               "width": args.width, "max_steps": args.max_steps, "acc2": f"(pred > {MIDDLE}) == (target > {MIDDLE})",
               "results": results}
    finish(out, "btw-regression", argv, "BTW on avdigits sequences: regression on the digit's value",
           {"Results": text + "\n\n" + note}, summary, timer)
    return summary


if __name__ == "__main__":
    main()
