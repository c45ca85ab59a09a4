"""The ``jaxmm`` command: list methods and datasets, prepare a dataset, train a run, evaluate a finished run,
run an experiment."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import tempfile
import warnings

EXPERIMENTS = {
    "spurious-xor": "jaxmm.experiments.spurious_xor",
    "pid-xor": "jaxmm.experiments.pid_xor",
    "pid-xor-masking-control": "jaxmm.experiments.pid_xor_masking_control",
    "imbalance": "jaxmm.experiments.imbalance",
    "ogm-ge-diagnosis": "jaxmm.experiments.ogm_ge_diagnosis",
    "interactions": "jaxmm.experiments.interactions",
    "multibench": "jaxmm.experiments.multibench",
    "btw-regression": "jaxmm.experiments.btw_regression",
}


def _cmd_methods(args) -> None:
    from jaxmm.methods import available, get_method, load_plugins, options_of

    load_plugins(args.plugin or ())
    for name, summary in available().items():
        print(f"{name:18s} {summary}")
        opts = options_of(name)
        if opts:
            print(f"{'':18s}   options: " + ", ".join(f"{k}={v!r}" for k, v in opts.items()))
        if name != "unimodal":
            method = get_method(name)
            if method.hparams:
                print(f"{'':18s}   hparams: " + ", ".join(f"{k}={v}" for k, v in method.hparams.items()))
            print(f"{'':18s}   tasks: {', '.join(method.model.tasks)}")


def _cmd_datasets(args) -> None:
    from jaxmm.data.registry import DATASETS

    for name, entry in DATASETS.items():
        needs = entry.needs.replace("\n", "\n" + " " * 22)
        print(f"{name:15s} {entry.summary}\n{'':15s}   needs: {needs}")


def _loader_options(cfg, args, progress: bool) -> dict:
    """The loader options that are not part of the config; ``--data-dir`` goes into ``cfg.dataset_options``.

    ``--data-dir`` is stored in ``cfg.dataset_options`` (so ``config.json`` names
    the data); file-backed datasets also get ``progress`` and a cache folder
    (``--cache-dir``, default :func:`~jaxmm.data.registry.default_cache_dir`).
    """
    from jaxmm.data.registry import DATASETS, default_cache_dir

    if args.data_dir is not None:
        cfg.dataset_options["data_dir"] = os.path.abspath(args.data_dir)
    entry = DATASETS.get(cfg.dataset)
    if entry is None or entry.data_dir == "unused":
        return {}
    return {"cache_dir": args.cache_dir or cfg.dataset_options.get("cache_dir") or str(default_cache_dir()),
            "progress": cfg.dataset_options.get("progress", progress)}


RESUMABLE = ("train.epochs", "train.patience", "train.progress", "train.checkpoint_every", "train.eval_batch_size",
             "train.tensorboard", "train.figures", "train.wandb_project", "train.unimodal_reference")


def _requested_config(args, base: dict):
    """``base`` (config data) with --protocol, --config, the flags, --sweep and --set applied, type-checked."""
    from jaxmm.train.config import (RunConfig, apply_overrides, from_dict, load_config_file, merge, parse_seeds,
                                    to_dict)
    from jaxmm.train.protocols import apply_protocol
    from jaxmm.train.sweep import parse_sweep

    data = dict(base)
    if args.protocol:  # the protocol's settings for the method (and options) the command asks for
        data = to_dict(apply_protocol(from_dict(RunConfig, {**data, **_chosen_method(args, data)}), args.protocol))
    if args.config:
        data = merge(data, load_config_file(args.config))
    flags = {"method": args.method, "dataset": args.dataset, "name": args.name, "out_dir": args.out_dir,
             "seeds": parse_seeds(args.seeds) if args.seeds is not None else None}
    data = merge(data, {k: v for k, v in flags.items() if v is not None})
    if args.sweep:
        data["sweep"] = {**data.get("sweep", {}), **dict(parse_sweep(item) for item in args.sweep)}
    cfg = from_dict(RunConfig, data, "config")
    return apply_overrides(cfg, args.set or [])


def _chosen_method(args, data: dict) -> dict:
    """The method and method options the command line and --config ask for (a protocol's per-method
    settings depend on them, e.g. SynIB's flags on its mask)."""
    from jaxmm.train.config import load_config_file, parse_value

    given = load_config_file(args.config) if args.config else {}
    options = {**data.get("method_options", {}), **given.get("method_options", {})}
    for item in args.set or []:
        path, _, text = item.partition("=")
        if path.strip().startswith("method_options."):
            options[path.strip().split(".", 1)[1]] = parse_value(text)
    return {"method": args.method or given.get("method") or data.get("method"), "method_options": options}


def _new_config(args):
    """The config of a new run: defaults, then the command line. --method and --dataset are required."""
    from jaxmm.train.config import RunConfig, load_config_file, to_dict

    from jaxmm.train.protocols import protocol

    given = load_config_file(args.config) if args.config else {}
    if args.protocol and protocol(args.protocol).dataset:
        given = {**given, "dataset": protocol(args.protocol).dataset}
    for flag in ("method", "dataset"):
        if getattr(args, flag) is None and flag not in given:
            raise ValueError(f"--{flag} is required for a new run (or set {flag} in the --config file)")
    cfg = _requested_config(args, to_dict(RunConfig()))
    if args.name is None and "name" not in given:
        cfg.name = f"{cfg.method}-{cfg.dataset}"
    return cfg


def _resumed_config(args, run_dir: str):
    """The run's own config.json, with only the fields a resume may change taken from the command line.

    Raises:
      FileNotFoundError: the run has no config.json.
      ValueError: the command asks for a change of any other field (listing every difference).
    """
    from jaxmm.train.config import RunConfig, differences, from_dict

    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: {path} not found; there is no run to resume under this --name/--out-dir")
    with open(path) as f:
        stored = json.load(f)
    stored.pop("provenance", None)
    stored_cfg = from_dict(RunConfig, stored, path)
    requested = _requested_config(args, stored)
    changed = [d for d in differences(stored_cfg, requested) if not d.startswith(tuple(f"{k}:" for k in RESUMABLE))]
    if changed:
        raise ValueError(f"--resume continues the run as {path} records it, but this command changes "
                         f"{'; '.join(changed)}; drop those flags (only {', '.join(RESUMABLE)} may change) "
                         "or start a new run under another --name")
    return requested


def _cmd_train(args) -> None:
    from jaxmm.train.distributed import initialize  # before anything touches a device

    initialize(args.distributed)
    from jaxmm.methods import load_plugins
    from jaxmm.train.runs import run

    load_plugins(args.plugin or ())
    cfg = _resumed_config(args, _run_dir_of(args)) if args.resume else _new_config(args)
    root = os.path.join(cfg.out_dir, cfg.name)
    _check_writable(cfg.out_dir)
    results = run(cfg, root, data_options=_loader_options(cfg, args, cfg.train.progress), resume=args.resume,
                  overwrite=args.overwrite)
    rows = [(r.tag or "-", point, [r.fit.test[i] for i in runs]) for r in results for point, runs in r.grid().items()]
    _report(cfg, rows, root)


def _run_dir_of(args) -> str:
    """The folder of the run a --resume names: --out-dir/--name (default name <method>-<dataset>)."""
    if args.name is None and (args.method is None or args.dataset is None):
        raise ValueError("--resume needs the run's --name (or the --method and --dataset that named it)")
    return os.path.join(args.out_dir or "runs", args.name or f"{args.method}-{args.dataset}")


def _check_writable(out_dir: str) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"--out-dir {out_dir} is a file; give a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise OSError(f"--out-dir {out_dir} is not writable ({e.strerror}); give a folder you can write to") from None


def _report(cfg, rows, root: str) -> None:
    """Prints (and writes ``sweep.md`` for a sweep) mean ± std of the test metrics per grid point (process 0
    of several only)."""
    from jaxmm.train.distributed import is_main_process
    from jaxmm.train.loop import summarize

    if not is_main_process():
        return
    if len(rows) == 1 and rows[0][0] == "-":
        summary = summarize(rows[0][2])
        print(f"\n{cfg.method} on {cfg.dataset}, seeds {list(cfg.seeds)} — test metrics (mean ± std):")
        for key in [k for k in summary if not k.startswith("f1/")]:
            print(f"  {key:24s} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
        print(f"outputs: {root}/ ({_listing(root)})")
        return
    summaries = [(tag, point, summarize(runs)) for tag, point, runs in rows]
    keys = [k for k in summaries[0][2] if "/" not in k][:6]
    lines = [f"# Sweep {cfg.name}: {cfg.method} on {cfg.dataset}, seeds {list(cfg.seeds)} — test mean ± std", "",
             "| program | grid point | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for tag, point, summary in summaries:
        cells = [f"{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}" for k in keys]
        lines.append(f"| {tag} | {point} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(root, "sweep.md"), "w") as f:
        f.write(text + "\n")
    print(f"outputs: {root}/ (sweep.md; one folder per program)" if any(t != "-" for t, _, _ in rows)
          else f"outputs: {root}/ ({_listing(root)})")


def _listing(folder: str) -> str:
    """``"checkpoints/, config.json, ..."``: what a run folder holds (the lock excepted)."""
    names = sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else ()) if not n.startswith("."))
    return ", ".join(n + "/" if os.path.isdir(os.path.join(folder, n)) else n for n in names)


def _cmd_prepare(args) -> None:
    from jaxmm.data.registry import prepare_dataset
    from jaxmm.train.config import RunConfig, apply_overrides, parse_seeds

    cfg = RunConfig(dataset=args.dataset, seeds=parse_seeds(args.seeds))
    apply_overrides(cfg, args.set or [])
    loader = _loader_options(cfg, args, progress=True)  # puts --data-dir into cfg.dataset_options
    options = {**cfg.dataset_options, **loader}
    files = {}
    for seed in cfg.seeds:
        splits, used = prepare_dataset(cfg.dataset, seed, **options)
        files.update(used)
    for path, hit in files.items():
        print(f"cache: {path} ({'already built' if hit else 'built'})")
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        dropped = f", dropped {split.dropped}" if split.dropped else ""
        print(f"{name:5s} {len(split):7d} examples{dropped}")
    shapes = ", ".join(f"{m} {list(x.shape[1:])} {x.dtype}" for m, x in splits.train.inputs.items())
    print(f"inputs: {shapes}; {splits.num_classes} classes")


def _cmd_evaluate(args) -> None:
    """Recomputes a run's test and validation metrics from its checkpoint; ``--robustness`` adds the curves."""
    from jaxmm.train.evaluate import load_run
    from jaxmm.train.loop import summarize
    from jaxmm.train.robustness import parse_levels, robustness, write_robustness

    levels = parse_levels(args.levels)  # before the (slow) load
    run = load_run(args.run_dir, data_dir=args.data_dir, cache_dir=args.cache_dir)
    cfg = run.config
    print(f"{cfg.method} on {cfg.dataset}, {run.num_runs} run(s) (seeds {list(run.seeds)}), selected epochs "
          f"{run.selected_epoch}, recomputed from {run.path}/checkpoints")
    for split in ("test", "val"):
        per_run = run.evaluate(split)
        same = run.results is not None and json.dumps(per_run) == json.dumps([r[split] for r in run.results["runs"]])
        summary = summarize(per_run)
        print(f"{split} metrics (mean ± std; {'identical to' if same else 'not as in'} results.json):")
        for key in [k for k in summary if not k.startswith("f1/")]:
            print(f"  {key:24s} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    if args.robustness:
        result = robustness(run, levels=levels, fill=args.fill, split=args.split, seed=args.noise_seed)
        print("\n" + result.table())
        print(f"outputs: {', '.join(write_robustness(run, result))}")


def _cmd_experiment(args) -> None:
    module = importlib.import_module(EXPERIMENTS[args.name])
    module.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxmm`` command (its help lists the registered methods, datasets,
    protocols and experiments)."""
    from jaxmm.data.registry import DATASETS
    from jaxmm.methods import available
    from jaxmm.train.protocols import PROTOCOLS

    methods, datasets = ", ".join(available()), ", ".join(DATASETS)
    parser = argparse.ArgumentParser(
        prog="jaxmm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"methods: {methods}\ndatasets: {datasets}\nprotocols: {', '.join(PROTOCOLS)}\n"
               f"experiments: {', '.join(EXPERIMENTS)}\n\n'jaxmm COMMAND --help' shows a command's options.")
    parser.add_argument("--version", action="version", version=f"jaxmm {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    methods = sub.add_parser("methods", help="list registered methods with their options and hyper-parameters")
    sub.add_parser("datasets", help="list registered datasets and what each needs on disk")
    train = sub.add_parser("train", help="train a method on a dataset (one vmapped run per seed)")
    train.add_argument("--method", help=f"registered method, one of {methods} or a --plugin's (required unless "
                                        "--config sets it or --resume)")
    train.add_argument("--dataset", choices=list(DATASETS), metavar="DATASET",
                       help=f"registered dataset, one of {datasets} (required unless --config sets it or --resume)")
    train.add_argument("--seeds", help="comma-separated model/data seeds, e.g. 0,1,2 (default 0)")
    train.add_argument("--name", help="run name (default <method>-<dataset>)")
    train.add_argument("--out-dir", help="folder of the run folders (default runs)")
    train.add_argument("--config", metavar="FILE",
                       help="start from a config file: Python (get_config() returning a RunConfig or a dict), "
                            "YAML or JSON; flags and --set apply after it")
    train.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                       help="train every combination of these values with the seeds, e.g. hparams.lam=0.1,1,10 "
                            "(repeatable; hparams.*, optimizer.lr and optimizer.weight_decay share one "
                            "vmapped program, other fields get a program each)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field, e.g. optimizer.lr=3e-4, method_options.mask=learned, "
                            "dataset_options.alpha=0.8, hparams.lam=10, train.epochs=50 (repeatable)")
    train.add_argument("--protocol", choices=PROTOCOLS, metavar="PROTOCOL",
                       help=f"start from a named protocol's model, optimiser and loop, one of {', '.join(PROTOCOLS)}; "
                            "--set overrides apply after it")
    train.add_argument("--resume", action="store_true",
                       help="continue the run from its newest checkpoint, with its own config.json (only "
                            "train.epochs, train.patience and how progress is shown may change)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run the folder holds (its checkpoints and outputs are removed first)")
    train.add_argument("--distributed", dest="distributed", action="store_const", const="on", default="auto",
                       help="join the other processes of this run through jax.distributed.initialize() with JAX's "
                            "own cluster detection (TPU pod slices, Open MPI). Without it this happens when "
                            "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID are set, or in a "
                            "SLURM step of several tasks (README: Several GPUs, hosts, SLURM, TPU pods)")
    train.add_argument("--no-distributed", dest="distributed", action="store_const", const="off",
                       help="train in this process alone, whatever the environment says")
    for command in (train, methods):
        command.add_argument("--plugin", action="append", metavar="MODULE",
                             help="import MODULE first (a module registering methods with "
                                  "jaxmm.methods.register; repeatable). Installed packages can instead "
                                  "declare a 'jaxmm.methods' entry point")
    prepare = sub.add_parser("prepare", help="preprocess a file-backed dataset into the cache used by train")
    prepare.add_argument("dataset", choices=list(DATASETS), metavar="DATASET", help=f"one of {datasets}")
    prepare.add_argument("--seeds", default="0", help="as for train (only avdigits' cache depends on the seed)")
    prepare.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="as for train; the dataset_options.* ones select the cache, e.g. "
                              "dataset_options.num_frames=3 (repeatable)")
    evaluate = sub.add_parser("evaluate", help="recompute a finished run's metrics from its checkpoint; "
                                                 "--robustness: metric vs dropped and noised modalities")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (of a sweep: one program's folder)")
    evaluate.add_argument("--robustness", action="store_true",
                          help="for each modality, the metric as it is dropped (--fill) or noised (--levels); "
                               "prints a table, writes robustness.json and robustness.png into RUN_DIR")
    evaluate.add_argument("--levels", default="0,0.25,0.5,1,2",
                          help="noise levels: Gaussian noise std as multiples of each modality's train std "
                               "(default 0,0.25,0.5,1,2)")
    evaluate.add_argument("--fill", choices=("zero", "mean"), default="zero",
                          help="a dropped modality's inputs become zeros or the train split's mean (default zero)")
    evaluate.add_argument("--split", choices=("test", "val"), default="test",
                          help="the split of the robustness curves (default test)")
    evaluate.add_argument("--noise-seed", type=int, default=0, help="seed of the noise (default 0)")
    for command in (train, prepare, evaluate):
        command.add_argument("--data-dir", help="folder of a file-backed dataset (see 'jaxmm datasets')")
        command.add_argument("--cache-dir", help="preprocessing cache folder (default: $JAXMM_CACHE_DIR or "
                                                 "~/.cache/jaxmm)")
    exp = sub.add_parser("experiment", help=f"reproduce a paper figure: {', '.join(EXPERIMENTS)}")
    exp.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=f"one of {', '.join(EXPERIMENTS)}")
    exp.add_argument("rest", nargs=argparse.REMAINDER, help="the experiment's own options (see NAME --help)")
    return parser


def main(argv=None) -> None:
    """Entry point of the ``jaxmm`` console script."""
    args = build_parser().parse_args(argv)
    if not args.debug:  # one line per warning, as for errors
        warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        {"methods": _cmd_methods, "datasets": _cmd_datasets, "train": _cmd_train, "prepare": _cmd_prepare,
         "evaluate": _cmd_evaluate, "experiment": _cmd_experiment}[args.command](args)
    except (ValueError, TypeError, OSError, RuntimeError, ModuleNotFoundError, FloatingPointError) as e:
        if args.debug:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SystemExit(f"jaxmm {args.command}: error: {message} (--debug shows the traceback)") from None


def _version() -> str:
    from jaxmm import __version__

    return __version__


if __name__ == "__main__":
    main()
