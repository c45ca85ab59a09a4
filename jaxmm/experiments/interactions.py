"""Interactions: how each method uses redundant, unique and synergistic information.

Every method trains on PID-XOR at several compositions (``p_syn`` 0.1, 0.2, 0.4, the rest split
evenly between unique-to-x0 and redundant; ``p_u2 = 0``) and on avdigits when its recordings are
present. Reported per method, mean ± std over seeds: fused test accuracy, per-source accuracy
(PID-XOR), per-modality accuracy, and the synergy indicator (fused right while every unimodal
prediction is wrong) measured twice: against the method's unimodal heads (NaN without heads) and
against linear probes on its frozen encoder features (every method). Beside them, the PID of each
dataset (BROJA, :mod:`jaxmm.metrics.pid`):

* PID-XOR, ``generator`` codes: each modality's raw 32-d input becomes one of 7 codes, which
  source block is active (an active block lies exactly in its projection's range: zero
  least-squares residual) and the sign of its recovered latent; these codes carry the planted
  information, so the PID recovers the composition (``R = p_red``, ``U1 = p_u1``, ``S = p_syn``).
  Only while ``p_u2 = 0``: with both unique sources present BROJA's minimiser may pair a u1
  example's x0 with a u2 example's x1 and count part of the unique information as redundant.
* ``kmeans`` codes: k-means (8 clusters) of each modality's standardised training inputs, the
  generic estimate one can make on real data (it under-counts information that k-means cells
  do not separate); the only estimate for avdigits.

Models: the PID-XOR MLP of ``pid-xor`` (unimodal heads trained with the encoders, not detached, so
that head-based methods work) and the README's avdigits MLP. Method defaults otherwise, except that
DMIL gets the encoder width and stages of a third of the epochs each, and MMCosine one-Linear heads.

``--protocol small`` (default) is sized for a shared CPU (width 64, 20 epochs, method defaults);
``--protocol paper`` follows the SynIB PID-XOR protocol (width 1024, 30 epochs, λ ∈ {0.1, 1, 10}
chosen per run on validation, for methods with a ``lam``).

    jaxmm experiment interactions [--methods vanilla,ensemble,dmil] [--protocol small|paper]
                                  [--datasets pid_xor,avdigits]
"""
from __future__ import annotations

import dataclasses
import traceback

import jax
import numpy as np

from jaxmm.experiments import _pid
from jaxmm.experiments._common import (Timer, configure, experiment_parser, finish, mean_std_table, output_dir, parse,
                                       parse_names, pyplot, save_figure)
from jaxmm.data.registry import load_dataset
from jaxmm.data.synthetic import pid_xor
from jaxmm.methods import available, get_method
from jaxmm.metrics import pid
from jaxmm.metrics.classification import probe_report
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.batching import stack_runs
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig
from jaxmm.train.runs import run as train

METHODS = {  # shown name -> (registry name, options)
    "vanilla": ("vanilla", {}),
    "ensemble": ("ensemble", {}),
    "synib-random": ("synib", {"mask": "random"}),
    "synib-learned": ("synib", _pid.LEARNED),
    **{m: (m, {}) for m in ("dmil", "btw", "iibalance", "mcr", "pmr", "reconboost", "mmcosine")},
}
PROTOCOLS = {"small": {"width": 64, "epochs": 20, "avdigits_epochs": 10, "lams": ""},
             "paper": {"width": 1024, "epochs": 30, "avdigits_epochs": 30, "lams": "0.1,1,10"}}
MODEL_NEEDS = {"mmcosine": {"unimodal_hidden": ()}}  # its heads are the class-weight matrices: one Linear each
P_SYN = (0.1, 0.2, 0.4)
KMEANS_BINS = 8
AVDIGITS_MODEL = MLPModelConfig(encoder_hidden=(128, 64), fusion_hidden=(64,))
TRAIN = TrainConfig(batch_size=64, select="best", checkpoint_every=0, progress=False)
PID_XOR = RunConfig(dataset="pid_xor", optimizer=_pid.BASE.optimizer, train=TRAIN)
AVDIGITS = RunConfig(dataset="avdigits", model=AVDIGITS_MODEL, train=TRAIN,
                     optimizer=OptimizerConfig(name="adam", lr=1e-3, weight_decay=0.0))
COLUMNS = {"acc": "acc", "acc/source/syn": "syn-source acc", "acc/source/u1": "u1-source acc",
           "acc/source/red": "red-source acc", "synergy": "synergy (heads)", "synergy/probe": "synergy (probes)"}


def resolve_methods(text: str | None) -> list[str]:
    """Shown method names to run: ``text`` (comma-separated) or every default that is registered.

    A name is a key of :data:`METHODS` or any registered method (its default options).

    Raises:
      SystemExit: an unknown name, or a named method that is not registered.
    """
    registered = available()
    if not text:
        missing = [m for m, (reg, _) in METHODS.items() if reg not in registered]
        if missing:
            print(f"warning: skipping methods not registered yet: {', '.join(missing)}")
        return [m for m in METHODS if m not in missing]
    names = [m for m in text.split(",") if m]
    unknown = sorted(m for m in names if m not in METHODS and m not in registered)
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(set(METHODS) | set(registered))}")
    absent = sorted(m for m in names if m in METHODS and METHODS[m][0] not in registered)
    if absent:
        raise SystemExit(f"method(s) {absent} are not registered; registered: {sorted(registered)}")
    return names


def pid_xor_codes(x: np.ndarray, modality: int) -> np.ndarray:
    """Generator-aware discrete codes of raw (unstandardised) PID-XOR inputs of one modality.

    Code 0: no source block active; ``1 + 2b + s`` for the first active block ``b`` (0 unique,
    1 redundant, 2 synergistic) with ``s`` the sign of its least-squares latent (1 if positive).

    Args:
      x: ``[N, 32]`` raw inputs of modality ``x0`` (``modality=0``) or ``x1`` (``1``).
      modality: 0 or 1.
    """
    if modality not in (0, 1):
        raise ValueError(f"modality must be 0 (x0) or 1 (x1), got {modality}")
    proj = pid_xor.projections()
    x = np.asarray(x, np.float64)
    code = np.zeros(len(x), np.int64)
    for b, (block, name) in enumerate(((pid_xor.BLOCKS["u1"], "u"), (pid_xor.BLOCKS["red"], "r"),
                                       (pid_xor.BLOCKS["syn"], "s"))):
        a = np.asarray(proj[f"{name}{modality}"], np.float64)[block]
        latent = np.linalg.lstsq(a, x[:, block].T, rcond=None)[0]
        residual = np.linalg.norm(x[:, block].T - a @ latent, axis=0)
        active = residual < 1e-4 * (1.0 + np.linalg.norm(x[:, block], axis=1))
        code = np.where(active & (code == 0), 1 + 2 * b + (latent.sum(0) > 0), code)
    return code


def pid_xor_dataset_pid(point, seed: int, train) -> dict[str, pid.PID]:
    """PID (bits) of one PID-XOR dataset: ``generator`` codes of its raw pool (train + val, regenerated
    from ``seed``) and ``kmeans`` codes of its standardised ``train`` split (see the module doc)."""
    raw = jax.device_get(pid_xor.generate(jax.random.key(seed), pid_xor.POOL, np.asarray(point, np.float32)))
    y = np.asarray(raw["y"], np.int64)
    generator = pid.pid_from_samples(pid_xor_codes(raw["x0"], 0), pid_xor_codes(raw["x1"], 1), y)
    return {"generator": generator, "kmeans": kmeans_pid(train)}


def kmeans_pid(train) -> pid.PID:
    """PID (bits) of a two-modality training split, each modality's inputs in k-means cells."""
    if len(train.modalities) != 2:
        raise ValueError(f"the PID needs exactly two modalities, got {train.modalities}")
    codes = [pid.discretize(train.inputs[m].reshape(len(train), -1), KMEANS_BINS) for m in train.modalities]
    return pid.pid_from_samples(*codes, np.asarray(train.label, np.int64))


def run_method(name: str, base: RunConfig, lams) -> dict:
    """Trains every dataset point and seed (× λ) of one method as one vmapped program.

    Args:
      name: shown method name.
      base: the dataset (PID-XOR compositions swept as ``dataset_options.probs``), seeds, model,
        optimiser and epochs (the validation-best epoch is kept).
      lams: λ candidates for methods with a ``lam`` hyper-parameter, chosen per key on validation.

    Returns:
      ``(composition or dataset name, seed)`` -> test metrics of the chosen run, with the probe metrics
      (``acc/probe/<m>``, ``synergy/probe``) on the encoder features (the ``features`` of the method's
      evaluation pass, per modality).
    """
    registry_name, options = METHODS.get(name, (name, {}))
    epochs, width = base.train.epochs, base.model.encoder_hidden[-1]
    if registry_name == "dmil":  # its modules read the encoder width; the DMIL paper gives no stage lengths
        options = {"feature_width": width, "stage_epochs": (epochs // 3, epochs // 3), **options}  # a third each
    method = get_method(registry_name, **options)
    sweep = dict(base.sweep)
    if lams and "lam" in method.hparams:
        sweep["hparams.lam"] = list(lams)
    cfg = dataclasses.replace(base, name=name, method=registry_name, method_options=dict(options), sweep=sweep,
                              model=dataclasses.replace(base.model, **MODEL_NEEDS.get(registry_name, {})))
    (program,) = train(cfg, None)
    result, splits = program.fit, program.splits
    keys = [(tuple(p["dataset_options.probs"]) if "dataset_options.probs" in p else cfg.dataset, s)
            for p, s in zip(program.points, program.seeds)]
    state = result.state._replace(params=result.params, method_state=result.method_state)
    train_split, test = stack_runs([s.train for s in splits]), stack_runs([s.test for s in splits])
    feats_train, feats_test = ({m: v for m, v in result.trainer.outputs(state, split, 4096).features.items()
                                if m in splits[0].train.modalities} for split in (train_split, test))
    pred_test, _ = result.trainer.predict(state, test, 4096)
    out = {}
    for key in dict.fromkeys(keys):
        best = max((i for i, k in enumerate(keys) if k == key), key=lambda i: result.val[i]["acc"])
        probes = probe_report(pred_test[best], test.label[best], {m: f[best] for m, f in feats_train.items()},
                              train_split.label[best], {m: f[best] for m, f in feats_test.items()})
        out[key] = {**result.test[best], **probes, "lam": program.points[best].get("hparams.lam")}
    return out


def run_all(methods, base: RunConfig, lams) -> tuple[dict, dict]:
    """:func:`run_method` for every method; a method that fails is reported and skipped.

    Returns:
      (method -> key -> metrics, method -> error text of the failed ones).
    """
    results, failed = {}, {}
    for m in methods:
        timer = Timer()
        try:
            results[m] = run_method(m, base, lams)
            print(f"{m}: done in {timer.seconds:.0f} s", flush=True)
        except Exception as exc:  # one broken method must not lose the others' results
            failed[m] = "".join(traceback.format_exception_only(exc)).strip()
            print(f"warning: {m} failed and is left out: {failed[m]}")
    return results, failed


def metric_table(results: dict, keys, columns: dict) -> str:
    """``mean ± std`` over ``keys`` of each method's metrics (NaN, e.g. no heads, shown as —)."""
    cells = {}
    for m, per_key in results.items():
        for metric, title in columns.items():
            values = [per_key[k].get(metric, np.nan) for k in keys]
            cells[(m, title)] = [v for v in values if not np.isnan(v)]
    return mean_std_table(list(results), list(columns.values()), cells, "method")


def pid_table(estimates: dict) -> str:
    """Markdown table of PID atoms (bits), mean ± std over seeds, one row per dataset and discretisation."""
    cells = {}
    for row, per_seed in estimates.items():
        for atom in pid.PID._fields:
            cells[(row, atom)] = [getattr(e, atom) for e in per_seed]
    return mean_std_table(list(estimates), list(pid.PID._fields), cells, "dataset (codes)")


def plot(results: dict, points, seeds, path: str, title: str) -> None:
    """Against ``p_syn``: synergy-source accuracy, synergy indicator (heads solid, probes dashed), fused accuracy."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    colors = plt.get_cmap("tab20")
    x = [p[3] for p in points]
    panels = (("acc/source/syn", "synergy-source test accuracy"), ("synergy", "synergy indicator"),
              ("acc", "fused test accuracy"))
    for i, m in enumerate(results):
        for ax, (metric, label) in zip(axes, panels):
            for key, style in ((metric, "-"), ("synergy/probe", "--")) if metric == "synergy" else ((metric, "-"),):
                values = np.array([[results[m][(p, s)].get(key, np.nan) for s in seeds] for p in points])
                if not np.all(np.isnan(values)):
                    ax.errorbar(x, np.nanmean(values, 1), np.nanstd(values, 1), fmt="o" + style, color=colors(i % 20),
                                capsize=2, label=m if style == "-" or metric != "synergy" else None)
            ax.set_title(label)
            ax.set_xlabel("p_syn")
            ax.grid(alpha=0.3)
    axes[1].text(0.02, 0.95, "solid: heads, dashed: probes", transform=axes[1].transAxes, fontsize=7, va="top")
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    save_figure(fig, path)


def parse_args(argv):
    """The command line: (args, methods, λ candidates)."""
    p = experiment_parser("interactions", __doc__, epochs=None)
    p.add_argument("--methods", default="", help="comma-separated (default: every listed method that is registered)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="small")
    p.add_argument("--datasets", default="pid_xor,avdigits", help="pid_xor and/or avdigits")
    p.add_argument("--p-syn", default=",".join(map(str, P_SYN)), help="synergy fractions of the PID-XOR compositions")
    for name in ("width", "avdigits_epochs"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help="default: the protocol's")
    p.add_argument("--lams", help="λ candidates (default: the protocol's; empty: the method defaults)")
    args = parse(p, argv)
    for k, v in PROTOCOLS[args.protocol].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    parse_names(args.datasets, ("pid_xor", "avdigits"), "dataset")
    lams = [float(v) for v in args.lams.split(",") if v]
    return args, resolve_methods(args.methods), lams


def main(argv=None) -> None:
    """Command-line entry: runs the methods, prints and writes the tables, the figure and results.json."""
    args, methods, lams = parse_args(argv)
    seeds = list(args.seeds)
    out = output_dir(args.out_dir, f"interactions-{args.protocol}", args.overwrite)
    timer = Timer()
    tables, record, pids = {}, {"args": vars(args), "methods": methods, "failed": {}}, {}
    if "pid_xor" in args.datasets.split(","):
        points = _pid.target_points([float(s) for s in args.p_syn.split(",")])
        base = configure(PID_XOR, seeds=seeds, epochs=args.epochs, overrides=args.set,
                         model=dataclasses.replace(_pid.model_config(args.width), detach_unimodal=False),
                         sweep={"dataset_options.probs": points})
        results, record["failed"]["pid_xor"] = run_all(methods, base, lams)
        for pt in points:
            tables[f"PID-XOR p_syn={pt[3]:g} (p_u1={pt[0]:g}, p_red={pt[2]:g})"] = metric_table(
                results, [(pt, s) for s in seeds], COLUMNS)
            estimates = [pid_xor_dataset_pid(pt, s, pid_xor.splits(s, pt).train) for s in seeds]
            for codes in ("generator", "kmeans"):
                pids[f"PID-XOR p_syn={pt[3]:g} ({codes})"] = [e[codes] for e in estimates]
        record["pid_xor"] = {m: {f"{k[0]}|seed={k[1]}": v for k, v in r.items()} for m, r in results.items()}
        if results:
            plot(results, points, seeds, out.file("interactions.png"),
                 f"PID-XOR, width {args.width}, {args.epochs} epochs, seeds {seeds}")
    if "avdigits" in args.datasets.split(","):
        try:
            data = {s: load_dataset("avdigits", s) for s in seeds}
        except FileNotFoundError as exc:
            print(f"avdigits skipped: its recordings are not available ({exc})")
            data = None
        if data:
            base = configure(AVDIGITS, seeds=seeds, epochs=args.avdigits_epochs, overrides=args.set)
            results, record["failed"]["avdigits"] = run_all(methods, base, lams)
            mods = data[seeds[0]].train.modalities
            columns = {"acc": "acc", **{f"acc/{m}": f"{m} head" for m in mods},
                       **{f"acc/probe/{m}": f"{m} probe" for m in mods},
                       "synergy": "synergy (heads)", "synergy/probe": "synergy (probes)"}
            tables["avdigits"] = metric_table(results, [("avdigits", s) for s in seeds], columns)
            pids["avdigits (kmeans)"] = [kmeans_pid(split.train) for split in data.values()]
            record["avdigits"] = {m: {f"seed={k[1]}": v for k, v in r.items()} for m, r in results.items()}
    tables["PID of the datasets (bits)"] = pid_table(pids)
    record["pid"] = {row: [e._asdict() for e in per_seed] for row, per_seed in pids.items()}
    failed = {f"{d}/{m}": e for d, per in record["failed"].items() for m, e in per.items()}
    if failed:
        tables["Failed methods"] = "\n".join(f"- {k}: {e}" for k, e in failed.items())
    for title, table in tables.items():
        print(f"\n{title} (mean ± std over seeds {seeds})\n{table}")
    finish(out, "interactions", argv, f"Interactions ({args.protocol} protocol, seeds {seeds})", tables, record, timer)


if __name__ == "__main__":
    main()
