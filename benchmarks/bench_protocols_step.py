"""Training-step time of the MultiBench sequence protocols, three seeds vmapped, on data in the files' shapes.

For each protocol (:mod:`jaxmm.train.protocols`: ``mosi_btw``, ``mosei_btw``, ``mosi_synib``,
``mustard_synib``, ``urfunny_synib``, ``mosei_dmil``) and each method timed under it (vanilla and
the protocol's own method), the benchmark writes one MultiBench pickle with the real file's
feature widths and ``T = 50`` steps (left zero-padded, random lengths; the reader of
:mod:`jaxmm.data.readers.multibench` cleans it as it does the real file), builds the run exactly as
``jaxmm train --protocol NAME --method METHOD --seeds 0,1,2`` does (:func:`apply_protocol`, the
modality subset, the registry's method) and times the real jitted step,
:meth:`Trainer.step <jaxmm.train.trainer.Trainer.step>`, of the three runs side by side on one
fixed batch of the protocol's size. Compilation is reported separately (``compile_s``); the timed
steps run round-robin over the protocols' methods so machine load hits them alike. Epoch-end
hooks (BTW's refresh, DMIL's stage switches) and unimodal pre-training are not part of a step.

Usage::

    python -m benchmarks.bench_protocols_step            # every protocol, results/protocols_step_<device>.json
    python -m benchmarks.bench_protocols_step --protocols mosi_btw --steps 3
"""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import statistics
import tempfile
import time
import traceback

import jax
import numpy as np

from benchmarks._common import device_name, jax_environment, round_robin
from jaxmm.data.registry import load_dataset
from jaxmm.methods import get_method
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.config import RunConfig
from jaxmm.train.loop import task_of_splits
from jaxmm.train.optim import with_total_steps
from jaxmm.train.protocols import apply_protocol
from jaxmm.train.runs import select_modalities
from jaxmm.train.sharding import replicate, shard_batch
from jaxmm.train.trainer import Trainer, resolve_hparams

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
STEPS = 50
"""Steps per sequence in the MultiBench files."""
WIDTHS = {"mosi_data.pkl": (20, 5), "mosei_senti_data.pkl": (35, 74), "sarcasm.pkl": (371, 81),
          "humor.pkl": (371, 81)}
"""File -> (vision, audio) feature widths (``../shared/specs/data.md`` §1.4); text is 300-d GloVe."""
PROTOCOL_METHODS = {"mosi_btw": ("vanilla", "btw"), "mosei_btw": ("vanilla", "btw"),
                    "mosi_synib": ("vanilla", "synib"), "mustard_synib": ("vanilla", "synib"),
                    "urfunny_synib": ("vanilla", "synib"), "mosei_dmil": ("vanilla", "dmil")}
SEEDS = (0, 1, 2)


def write_pickle(path: pathlib.Path, vision: int, audio: int, n: int, sentiment: bool) -> None:
    """A MultiBench pickle of ``n`` examples per split: left zero-padded ``[n, 50, D]`` float32 arrays,
    ``-inf`` in a few audio values, sentiment in [-3, 3] shaped ``[n, 1, 1]`` or 0/1 labels."""
    rng = np.random.default_rng(0)

    def split():
        lengths = rng.integers(5, STEPS + 1, n)
        d = {}
        for m, width in (("vision", vision), ("audio", audio), ("text", 300)):
            x = rng.standard_normal((n, STEPS, width)).astype(np.float32)
            x[np.arange(STEPS)[None] < (STEPS - lengths)[:, None]] = 0.0
            d[m] = x
        d["audio"][0, -1, 0] = -np.inf
        labels = rng.uniform(-3, 3, n) if sentiment else rng.integers(0, 2, n).astype(np.float64)
        d["labels"] = labels.reshape(n, 1, 1) if sentiment else labels
        return d

    with open(path, "wb") as f:
        pickle.dump({key: split() for key in ("train", "valid", "test")}, f)


def runner(name: str, method_name: str, data_dir: pathlib.Path):
    """Builds and compiles one protocol/method step over :data:`SEEDS`; returns ``(run, record)``."""
    cfg = apply_protocol(RunConfig(method=method_name, dataset="multibench", seeds=SEEDS), name)
    options = {**cfg.dataset_options, "data_dir": str(data_dir)}
    splits = select_modalities(load_dataset(cfg.dataset, 0, **options), cfg.modalities)
    method = get_method(cfg.method, **cfg.method_options)
    n_train = len(splits.train)
    steps_per_epoch = -(-n_train // cfg.train.batch_size)
    optimizer = with_total_steps(cfg.optimizer, cfg.train.epochs, steps_per_epoch)  # as fit() completes it
    trainer = Trainer(method, {m: x.shape[1:] for m, x in splits.train.inputs.items()},
                      task_of_splits(splits, cfg.loss or None), cfg.model, optimizer, steps_per_epoch=steps_per_epoch)
    hparams = resolve_hparams(method, optimizer, [dict(cfg.hparams)] * len(SEEDS))
    data = stack_runs([splits.train] * len(SEEDS))
    order = np.tile(np.arange(n_train), (len(SEEDS), 1))
    batch = next(batches(data, order, cfg.train.batch_size))
    state = trainer.init(list(SEEDS), hparams, jax.tree.map(lambda x: x[0], batch))
    device_batch, device_hparams = shard_batch(batch, trainer.mesh), replicate(hparams, trainer.mesh)
    start = time.perf_counter()
    compiled = trainer._step.lower(state, device_batch, device_hparams).compile()
    compile_s = time.perf_counter() - start

    def run():
        nonlocal state
        state, metrics = compiled(state, device_batch, device_hparams)
        return metrics["loss"][0]

    params = sum(x.size for x in jax.tree.leaves(state.params)) // len(SEEDS)
    return run, {"batch_size": cfg.train.batch_size, "modalities": list(splits.modalities),
                 "input_shapes": {m: list(x.shape[1:]) for m, x in splits.train.inputs.items()},
                 "parameters_per_run": int(params), "compile_s": compile_s}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOL_METHODS), default=list(PROTOCOL_METHODS))
    parser.add_argument("--steps", type=int, default=10, help="timed round-robin rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--examples", type=int, default=64, help="examples per split of the written pickles")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="JSON path (default: results/protocols_step_<device>.json)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Times every protocol's methods, writes the JSON report, prints a Markdown table; returns the report."""
    args = parse_args(argv)
    runners, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="jaxmm-bench-protocols-") as tmp:
        for file, (vision, audio) in WIDTHS.items():
            write_pickle(pathlib.Path(tmp) / file, vision, audio, args.examples, sentiment=file.startswith("mos"))
        for name in args.protocols:
            for method_name in PROTOCOL_METHODS[name]:
                key = f"{name}/{method_name}"
                start = time.perf_counter()
                try:
                    run, record = runner(name, method_name, pathlib.Path(tmp))
                    for _ in range(args.warmup):
                        float(run())
                except Exception as e:  # noqa: BLE001 - one broken protocol must not stop the table
                    results[key] = {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0][:400],
                                    "traceback_tail": traceback.format_exc().splitlines()[-6:]}
                    continue
                runners[key] = run
                results[key] = {"status": "ok", **record, "setup_s": time.perf_counter() - start}
                print(f"{key}: compiled in {record['compile_s']:.1f} s", flush=True)
    for key, times in round_robin(runners, args.steps).items():
        results[key].update({"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)})
    report = {"benchmark": "protocols_step", "seeds_vmapped": len(SEEDS), "steps": args.steps,
              "machine": jax_environment(), "results": results}
    out = args.out or RESULTS_DIR / f"protocols_step_{device_name()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| protocol / method | batch | params / run | ms/step (3 seeds, median) | compile s |\n|---|---|---|---|---|")
    for key, r in results.items():
        if r["status"] != "ok":
            print(f"| {key} | failed: {r['error'][:100]} | | | |")
        else:
            print(f"| {key} | {r['batch_size']} | {r['parameters_per_run']:,} | {r['median_ms']:.1f} "
                  f"| {r['compile_s']:.1f} |")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
