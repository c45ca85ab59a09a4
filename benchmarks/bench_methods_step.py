"""Training-step time of every registered method on the audio-visual protocol, relative to vanilla.

Each method is built with its default options (``unimodal`` with
``modality=audio``, ``dmil`` with the ResNet feature width) and trained through the real jaxmm step, :meth:`Trainer.step
<jaxmm.train.trainer.Trainer.step>` (one run, the ``crema_d`` protocol's two
ResNet-18s, SGD with momentum), on one fixed batch of random data in the
readers' layouts (audio ``[B, F, T, 1]`` float32, frames ``[B, T, S, S, 3]``
uint8, normalised on the device). Each method runs ``--warmup`` untimed steps (the
first one compiles) and ``--steps`` timed ones, each ended by reading the loss to
the host; the median is reported and divided by vanilla's median measured in the
same process. Epoch-end hooks (prototype refreshes, re-initialisations, stage
switches) are not part of a step and are not timed. A method that fails to build
or to step is reported as failed with its error; the others still run.

Defaults are the CREMA-D protocol (batch 64, audio 1x257x188, 3 frames of
3x224x224, 6 classes). On a CPU use a small size, e.g.::

    python -m benchmarks.bench_methods_step --batch 4 --image-size 64 --audio-size 64 48 --steps 3

Writes ``benchmarks/results/methods_step_<device>.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
import traceback

import jax
import numpy as np

from benchmarks._common import add_protocol_args, device_name, jax_environment, time_steps
from jaxmm.data.types import Batch
from jaxmm.methods import available, get_method
from jaxmm.models.resnet import FEATURE_DIM
from jaxmm.tasks import Task
from jaxmm.train.protocols import protocol
from jaxmm.train.trainer import Trainer, resolve_hparams

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
METHOD_OPTIONS = {"unimodal": {"modality": "audio"}, "dmil": {"feature_width": FEATURE_DIM}}
"""Options a method cannot be built without."""
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def random_batch(args: argparse.Namespace) -> Batch:
    """A fixed random host batch with a leading run axis of 1, in the readers' layouts."""
    rng = np.random.default_rng(0)
    b = args.batch
    inputs = {
        "audio": rng.standard_normal((1, b, *args.audio_size, 1), dtype=np.float32),
        "visual": rng.integers(0, 256, (1, b, args.frames, args.image_size, args.image_size, 3), dtype=np.uint8),
    }
    return Batch(inputs=inputs, label=rng.integers(0, args.num_classes, (1, b)),
                 index=np.arange(b, dtype=np.int32)[None], meta={"valid": np.ones((1, b), np.float32)})


def method_runner(name: str, args: argparse.Namespace, batch: Batch):
    """Builds ``name``'s trainer and state; returns a closure running one step (returning its loss)."""
    p = protocol("crema_d")
    model_cfg = dataclasses.replace(p.model, dtype=DTYPES[args.dtype])
    method = get_method(name, **METHOD_OPTIONS.get(name, {}))
    shapes = {m: x.shape[2:] for m, x in batch.inputs.items()}
    trainer = Trainer(method, shapes, Task(num_classes=args.num_classes), model_cfg, p.optimizer,
                      steps_per_epoch=args.steps_per_epoch)
    hparams = resolve_hparams(method, p.optimizer, [{}])
    state = trainer.init([0], hparams, jax.tree.map(lambda x: x[0], batch))
    device_batch = jax.device_put(batch)

    def run():
        nonlocal state
        state, metrics = trainer.step(state, device_batch, hparams)
        return metrics["loss"][0]

    return run, method


def benchmark(name: str, args: argparse.Namespace, batch: Batch) -> dict:
    """One method's timing record, or ``{"status": "failed", "error": ...}``."""
    start = time.perf_counter()
    try:
        run, method = method_runner(name, args, batch)
        record = time_steps(run, args.warmup, args.steps)
    except Exception as e:  # noqa: BLE001 - a broken method must not stop the table
        return {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0][:400],
                "traceback_tail": traceback.format_exc().splitlines()[-6:], "seconds": time.perf_counter() - start}
    return {"status": "ok", **record, "per_term_grads": bool(method.transform and method.transform.per_term_grads),
            "epoch_end_hook": method.epoch_end is not None, "seconds": time.perf_counter() - start}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_protocol_args(parser, steps=20, warmup=3)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--steps-per-epoch", type=int, default=105,
                        help="for the protocol's StepLR (CREMA-D: 6,698 clips / 64)")
    parser.add_argument("--methods", nargs="+", help="methods to time (default: every registered one)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="JSON path (default: results/methods_step_<device>.json)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other methods' records already in --out (each record keeps the vanilla "
                             "time of its own invocation)")
    return parser.parse_args(argv)


def markdown(results: dict[str, dict]) -> list[str]:
    """Table rows: method, status, ms/step, ratio to vanilla, compile+first step seconds, notes."""
    rows = ["| method | ms/step (median) | / vanilla | first step s | notes |", "|---|---|---|---|---|"]
    for name, r in results.items():
        if r["status"] != "ok":
            rows.append(f"| {name} | failed | - | - | {r['error'][:120]} |")
            continue
        ratio = f"{r['relative_to_vanilla']:.2f}x" if "relative_to_vanilla" in r else "-"
        notes = ", ".join(n for n, on in (("per-term grads", r["per_term_grads"]),
                                          ("epoch-end hook (untimed)", r["epoch_end_hook"])) if on)
        rows.append(f"| {name} | {r['median_ms']:.1f} | {ratio} | {r['first_step_s']:.1f} | {notes} |")
    return rows


def write_report(args: argparse.Namespace, names: list[str], results: dict[str, dict], out: pathlib.Path) -> list[str]:
    """Writes the JSON report (merged with ``out``'s other records under ``--merge``); returns the table rows."""
    if args.merge and out.exists():
        results = {**json.loads(out.read_text())["results"], **results}
    shape = (f"B={args.batch}, audio 1x{args.audio_size[0]}x{args.audio_size[1]}, "
             f"{args.frames}x3x{args.image_size}^2, {args.dtype}")
    rows = markdown(results)
    report = {"benchmark": "methods_step", "shape": shape,
              "config": vars(args) | {"audio_size": list(args.audio_size), "out": str(out), "methods": names},
              "environment": jax_environment(), "results": results, "markdown": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return rows


def main(argv=None) -> None:
    """Times every method (vanilla first), rewriting the JSON after each one, and prints the Markdown table."""
    args = parse_args(argv)
    names = args.methods or list(available())
    names = ["vanilla"] + [n for n in names if n != "vanilla"]  # the reference first
    out = args.out or RESULTS_DIR / f"methods_step_{device_name()}.json"
    batch = random_batch(args)
    results = {}
    for name in names:
        r = results[name] = benchmark(name, args, batch)
        r["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        base = results["vanilla"].get("median_ms")
        if r["status"] == "ok" and base:
            r.update(vanilla_median_ms=base, relative_to_vanilla=r["median_ms"] / base)
        print(f"{name}: " + (f"{r['median_ms']:.1f} ms/step" if r["status"] == "ok" else f"FAILED {r['error']}"),
              flush=True)
        rows = write_report(args, names, results, out)  # a partial table survives an interrupted run
    print(f"\n{jax.devices()[0].device_kind}\n" + "\n".join(rows) + f"\nwrote {out}")


if __name__ == "__main__":
    main()
