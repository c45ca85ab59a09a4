"""Spurious-XOR (SynIB paper Fig. 6): fusion test accuracy vs spurious strength α.

Vanilla fusion, SynIB with oracle, random and learned masks; α ∈ {0, …, 2} × 3
seeds per method, each method's 21 runs trained as one vmapped program.

    jaxmm experiment spurious-xor [--epochs 100] [--out-dir runs] [--compile-cache DIR] [--workers N]

The runs write neither TensorBoard event files nor their own figures (``train.tensorboard=False``,
``train.figures=False``; the experiment reads ``results.json`` and draws one figure, and each
method's ``metrics.jsonl`` stays). The methods train side by side, one thread each on up to
``--workers`` at once (default: one per CPU core): XLA compiles and computes without Python's
global lock, so one method compiles while another trains; the results do not depend on it. The
methods share their datasets, generated and stacked once (:class:`~jaxmm.train.datacache.DataCache`). The
command keeps XLA's compiled programs in a persistent cache (``--compile-cache``, empty: off), which
also lets the methods share their identical programs (initialisation, evaluation).
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from jaxmm.experiments._common import (Timer, configure, experiment_parser, mean_std_table, output_dir, parse,
                                       parse_names, pyplot, save_figure, write_summary)
from jaxmm.models.multimodal import MLPModelConfig
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig
from jaxmm.train.datacache import DataCache
from jaxmm.train.runs import run as train

ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0)

# The best settings archived in the official script (SynIB paper App. F.1).
MODEL = MLPModelConfig(encoder_hidden=(16,), fusion_hidden=(32,), unimodal_hidden=(), dropout=0.0)
BASE = RunConfig(dataset="spurious_xor", model=MODEL, seeds=(0, 1, 2),
                 optimizer=OptimizerConfig(name="adam", lr=3e-4, weight_decay=1e-5),
                 train=TrainConfig(epochs=100, batch_size=128, select="last", checkpoint_every=0, tensorboard=False,
                                   figures=False))
METHODS = {
    "vanilla": dataclasses.replace(BASE, name="vanilla", method="vanilla",
                                   optimizer=OptimizerConfig(name="adam", lr=1e-2, weight_decay=1e-3)),
    "synib-oracle": dataclasses.replace(BASE, name="synib-oracle", method="synib", method_options={"mask": "oracle"},
                                        hparams={"lam": 10.0}),
    "synib-random": dataclasses.replace(BASE, name="synib-random", method="synib", method_options={"mask": "random"},
                                        hparams={"lam": 10.0, "p": 0.4}),
    "synib-learned": dataclasses.replace(BASE, name="synib-learned", method="synib",
                                         method_options={"mask": "learned", "anneal_epochs": 20},
                                         hparams={"lam": 10.0, "lam_sp": 0.03}),
}


# Each method's share of the grid's time on a CPU (compilation and training), longest first: the
# order the methods start in, so that the threads finish close together.
COST = {"synib-learned": 19, "vanilla": 10, "synib-random": 8, "synib-oracle": 7}


def default_workers(methods) -> int:
    """Methods trained at once: one per CPU core, at most one per method."""
    return max(1, min(len(methods), os.cpu_count() or 1))


def run(methods=tuple(METHODS), alphas=ALPHAS, seeds=(0, 1, 2), epochs: int = 100, out_dir: str = "runs",
        progress: bool = True, overrides=(), overwrite: bool = False, workers: int | None = None) -> dict:
    """Trains every method on the α × seed grid (one vmapped program per method, α swept as data).

    Args:
      overrides: ``--set``-style overrides of every method's :class:`RunConfig`.
      workers: methods trained at once, a thread each (default :func:`default_workers`); the
        results are the same for any number.

    Returns:
      ``{(method, α): [test acc per seed]}``, in the order of ``methods`` and ``alphas``.
    """
    out = output_dir(out_dir, "spurious-xor", overwrite)
    data = DataCache()  # every method trains on the same 21 datasets

    def train_method(name: str) -> list[list[float]]:
        cfg = configure(METHODS[name], seeds=seeds, epochs=epochs, progress=progress, overrides=overrides,
                        sweep={"dataset_options.alpha": list(alphas)})
        (program,) = train(cfg, f"{out.path}/{name}", overwrite=overwrite, data_cache=data)
        return [[program.fit.test[i]["acc"] for i in runs] for runs in program.grid().values()]

    order = sorted(methods, key=lambda m: -COST[m])
    workers = default_workers(methods) if workers is None else workers
    if workers == 1:  # in this thread: an interrupt stops at once
        done = dict(zip(order, map(train_method, order)))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            trained = pool.map(train_method, order)
            pool.submit(pyplot)  # the first worker done imports matplotlib for the figure while others train
            done = dict(zip(order, trained))
    return {(name, alpha): accs for name in methods for alpha, accs in zip(alphas, done[name])}


def plot(acc: dict, methods, alphas, path: str) -> None:
    """Accuracy vs α with ± std bands, one line per method (as the paper's Fig. 6)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in methods:
        m = np.array([np.mean(acc[(name, a)]) for a in alphas])
        s = np.array([np.std(acc[(name, a)]) for a in alphas])
        ax.plot(alphas, m, marker="o", label=name)
        ax.fill_between(alphas, np.clip(m - s, 0, 1), np.clip(m + s, 0, 1), alpha=0.15)
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="spurious strength α (train/val; 0 at test)", ylabel="fusion test accuracy", ylim=(0.4, 1.03),
           title="Spurious-XOR (SynIB Fig. 6)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "jaxmm", "xla")


def enable_compilation_cache(path: str) -> None:
    """Keeps compiled programs of at least 0.2 s under ``path`` (jax's persistent compilation cache)."""
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main(argv=None) -> None:
    """Command-line entry: runs the sweep, prints the table, writes figure and summary."""
    p = experiment_parser("spurious-xor", __doc__, epochs=BASE.train.epochs)
    p.add_argument("--alphas", default=",".join(map(str, ALPHAS)), help="spurious strengths α (comma-separated)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {list(METHODS)}")
    p.add_argument("--compile-cache", default=CACHE_DIR, metavar="DIR",
                   help="persistent XLA compilation cache ('' for none; default %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="methods trained at once, a thread each (default: one per CPU core); results do not "
                        "depend on it")
    args = parse(p, argv)
    if args.compile_cache:
        enable_compilation_cache(args.compile_cache)
    methods = parse_names(args.methods, METHODS)
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    alphas = tuple(float(a) for a in args.alphas.split(","))
    timer = Timer()
    acc = run(methods, alphas, args.seeds, args.epochs, args.out_dir, overrides=args.set, overwrite=args.overwrite,
              workers=args.workers)
    out = output_dir(args.out_dir, "spurious-xor", overwrite=True)  # run() checked it
    table = mean_std_table(methods, [f"α={a:g}" for a in alphas],
                           {(m, f"α={a:g}"): acc[(m, a)] for m in methods for a in alphas}, "method")
    plot(acc, methods, alphas, out.file("spurious_xor.png"))
    out.write_json("results.json", {"alphas": alphas, "seeds": args.seeds, "epochs": args.epochs,
                                    "test_acc": {m: {str(a): acc[(m, a)] for a in alphas} for m in methods}})
    write_summary(out, "Spurious-XOR: fusion test accuracy (mean ± std over seeds)",
                  "jaxmm experiment spurious-xor " + " ".join(argv or []), {"Results": table}, timer.seconds)
    print("\nSpurious-XOR — fusion test accuracy, mean ± std over seeds", list(args.seeds))
    print(table)
    print(f"\nfigure: {out.file('spurious_xor.png')}\nsummary: {out.file('summary.md')}  ({timer.seconds:.0f} s)")


if __name__ == "__main__":
    main()
