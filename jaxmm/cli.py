"""The ``jaxmm`` command: list methods and datasets, prepare a dataset, train a run, run an experiment."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

EXPERIMENTS = {
    "spurious-xor": "experiments.spurious_xor",
    "pid-xor": "experiments.pid_xor",
    "pid-xor-masking-control": "experiments.pid_xor_masking_control",
    "imbalance": "experiments.imbalance",
    "ogm-ge-diagnosis": "experiments.ogm_ge_diagnosis",
    "interactions": "experiments.interactions",
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


def _load_options(cfg, args, progress: bool) -> dict:
    """``cfg.dataset_options`` with ``--data-dir``/``--cache-dir`` applied.

    ``--data-dir`` is stored in ``cfg.dataset_options`` (so ``config.json`` names
    the data); file-backed datasets also get ``progress`` and a cache folder
    (``--cache-dir``, default :func:`~jaxmm.data.registry.default_cache_dir`).
    """
    from jaxmm.data.registry import DATASETS, default_cache_dir

    if args.data_dir is not None:
        cfg.dataset_options["data_dir"] = os.path.abspath(args.data_dir)
    options = dict(cfg.dataset_options)
    if args.cache_dir is not None:
        options["cache_dir"] = args.cache_dir
    entry = DATASETS.get(cfg.dataset)
    if entry is not None and entry.data_dir != "unused":
        options.setdefault("cache_dir", str(default_cache_dir()))
        options.setdefault("progress", progress)
    return options


def _cmd_train(args) -> None:
    from jaxmm.data.registry import load_dataset
    from jaxmm.methods import get_method, load_plugins
    from jaxmm.train.config import RunConfig, apply_overrides
    from jaxmm.train.loop import fit, summarize
    from jaxmm.train.outputs import RunDir
    from jaxmm.train.protocols import apply_protocol

    cfg = RunConfig(name=args.name or f"{args.method}-{args.dataset}", method=args.method, dataset=args.dataset,
                    seeds=tuple(int(s) for s in args.seeds.split(",")), out_dir=args.out_dir)
    if args.protocol:
        apply_protocol(cfg, args.protocol)
    apply_overrides(cfg, args.set or [])
    load_plugins(args.plugin or ())
    method = get_method(cfg.method, **cfg.method_options)
    cfg.method_options = dict(method.info.options)  # config.json records every option, defaults included
    options = _load_options(cfg, args, cfg.train.progress)
    splits = [load_dataset(cfg.dataset, seed, **options) for seed in cfg.seeds]
    run_dir = os.path.join(cfg.out_dir, cfg.name)
    RunDir(run_dir).write_json("config.json", cfg)
    result = fit(method, splits, cfg.seeds, cfg.model, cfg.optimizer, cfg.train,
                 hparams=[cfg.hparams] * len(cfg.seeds), run_dir=run_dir, resume=args.resume, loss=cfg.loss or None)
    summary = summarize(result.test)
    print(f"\n{method.name} on {cfg.dataset}, seeds {list(cfg.seeds)} — test metrics (mean ± std):")
    for key in [k for k in summary if not k.startswith("f1/")]:
        print(f"  {key:24s} {summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    print(f"outputs: {run_dir}/ (config.json, metrics.jsonl, results.json, curves.png)")


def _cmd_prepare(args) -> None:
    from jaxmm.data.registry import prepare_dataset
    from jaxmm.train.config import RunConfig, apply_overrides

    cfg = RunConfig(dataset=args.dataset, seeds=tuple(int(s) for s in args.seeds.split(",")))
    apply_overrides(cfg, args.set or [])
    options = _load_options(cfg, args, progress=True)
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


def _cmd_experiment(args) -> None:
    if args.name not in EXPERIMENTS:
        raise SystemExit(f"unknown experiment {args.name!r}; available: {', '.join(EXPERIMENTS)}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(EXPERIMENTS[args.name])
    module.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxmm`` command."""
    parser = argparse.ArgumentParser(prog="jaxmm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    methods = sub.add_parser("methods", help="list registered methods with their options and hyper-parameters")
    sub.add_parser("datasets", help="list registered datasets and what each needs on disk")
    train = sub.add_parser("train", help="train a method on a dataset (one vmapped run per seed)")
    train.add_argument("--method", required=True)
    train.add_argument("--dataset", required=True)
    train.add_argument("--seeds", default="0", help="comma-separated model/data seeds, e.g. 0,1,2")
    train.add_argument("--name", help="run name (default <method>-<dataset>)")
    train.add_argument("--out-dir", default="runs")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field, e.g. optimizer.lr=3e-4, method_options.mask=learned, "
                            "dataset_options.alpha=0.8, hparams.lam=10, train.epochs=50 (repeatable)")
    train.add_argument("--protocol", help="start from a named protocol's model, optimiser and loop "
                                           "(jaxmm.train.protocols: crema_d, crema_d_inforeg, crema_d_mmpareto, "
                                           "crema_d_dnr, kinetics_sounds); --set overrides apply after it")
    train.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    for command in (train, methods):
        command.add_argument("--plugin", action="append", metavar="MODULE",
                             help="import MODULE first (a module registering methods with "
                                  "jaxmm.methods.register; repeatable). Installed packages can instead "
                                  "declare a 'jaxmm.methods' entry point")
    prepare = sub.add_parser("prepare", help="preprocess a file-backed dataset into the cache used by train")
    prepare.add_argument("dataset")
    prepare.add_argument("--seeds", default="0", help="as for train (only avdigits' cache depends on the seed)")
    prepare.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="as for train; the dataset_options.* ones select the cache, e.g. "
                              "dataset_options.num_frames=3 (repeatable)")
    for command in (train, prepare):
        command.add_argument("--data-dir", help="folder of a file-backed dataset (see 'jaxmm datasets')")
        command.add_argument("--cache-dir", help="preprocessing cache folder (default: $JAXMM_CACHE_DIR or "
                                                 "~/.cache/jaxmm)")
    exp = sub.add_parser("experiment", help=f"reproduce a paper figure: {', '.join(EXPERIMENTS)}")
    exp.add_argument("name")
    exp.add_argument("rest", nargs=argparse.REMAINDER, help="the experiment's own options (see NAME --help)")
    return parser


def main(argv=None) -> None:
    """Entry point of the ``jaxmm`` console script."""
    args = build_parser().parse_args(argv)
    try:
        {"methods": _cmd_methods, "datasets": _cmd_datasets, "train": _cmd_train, "prepare": _cmd_prepare,
         "experiment": _cmd_experiment}[args.command](args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        raise SystemExit(f"jaxmm {args.command}: error: {e}") from e


if __name__ == "__main__":
    main()
