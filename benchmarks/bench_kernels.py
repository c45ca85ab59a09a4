"""Each Pallas kernel of ``jaxmm.kernels`` against its jitted XLA (jnp) reference.

Workloads are the transforms' real ones on the two-ResNet-18 audio-visual model
(parameter shapes of the official ResNet-18 encoders, ``--width-divisor`` to
shrink the channels): RedReg's orthogonal update over both encoders' tensors, and
MMPareto's update of one encoder with two competing terms. Both sides are jitted,
take the same per-tensor lists and return the same per-tensor lists (the kernel
side pays its packing). Each round times one kernel call and one reference call
back to back (interleaved, each ended by ``block_until_ready``); medians over
``--rounds``, for each ``--block-rows``.

On the CPU, Pallas runs only in interpret mode, which is no speed measurement:
the JSON records the kernels' agreement with the references and no timings. A
kernel earns a default in ``jaxmm/kernels/_dispatch.py`` only where ``speedup``
(reference / kernel median) is at least ``MIN_SPEEDUP`` (1.2) on an accelerator.

Writes ``benchmarks/results/kernels_<backend>.json`` (``--out``) with the device name::

    python -m benchmarks.bench_kernels [--rounds 30] [--block-rows 8 32 128]
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._common import jax_environment
from jaxmm import kernels
from jaxmm.transforms.mmpareto import pareto_weights

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def resnet18_shapes(in_channels: int, divisor: int) -> list[tuple[int, ...]]:
    """Parameter shapes of a ResNet-18 encoder (HWIO convs, BatchNorm scale and bias), channels / ``divisor``."""
    c = [max(1, w // divisor) for w in (64, 128, 256, 512)]
    shapes = [(7, 7, in_channels, c[0]), (c[0],), (c[0],)]
    cin = c[0]
    for stage, cout in enumerate(c):
        for block in range(2):
            first = block == 0 and stage > 0
            shapes += [(3, 3, cin, cout), (cout,), (cout,), (3, 3, cout, cout), (cout,), (cout,)]
            if first:
                shapes += [(1, 1, cin, cout), (cout,), (cout,)]
            cin = cout
    return shapes


def workloads(divisor: int, seed: int = 0) -> dict[str, tuple[str, tuple]]:
    """``{kernel: (description, arguments)}`` on random values of the audio-visual model's shapes."""
    audio, visual = resnet18_shapes(1, divisor), resnet18_shapes(3, divisor)
    both = audio + visual
    rng = np.random.default_rng(seed)

    def leaves(shapes, lead=()):
        return [jnp.asarray(rng.standard_normal(lead + s, np.float32)) for s in shapes]

    def size(shapes):
        return sum(int(np.prod(s)) for s in shapes)

    betas = jnp.where(jnp.arange(len(both)) < len(audio), 1.7, 0.0)  # audio dominant, visual untouched
    terms = leaves(visual, (2,))
    return {
        "orthogonal_update": (f"RedReg, both encoders: {len(both)} tensors, {size(both)} parameters",
                              (leaves(both), leaves(both), leaves(both), betas)),
        "pareto_update": (f"MMPareto, visual encoder, 2 terms: {len(visual)} tensors, {size(visual)} parameters",
                          (terms, [t.sum(0) for t in terms])),
    }


def functions(name: str, block_rows: int, interpret: bool):
    """The jitted ``(kernel, reference)`` pair of kernel ``name``."""
    if name == "orthogonal_update":
        kernel = functools.partial(kernels.orthogonal_update, block_rows=block_rows, interpret=interpret)
        return jax.jit(kernel), jax.jit(kernels.orthogonal_update_reference)
    kernel = functools.partial(kernels.pareto_update, weights=pareto_weights, scale=1.5, block_rows=block_rows,
                               interpret=interpret)
    reference = functools.partial(kernels.pareto_update_reference, weights=pareto_weights, scale=1.5)
    return jax.jit(kernel), jax.jit(reference)


def max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def measure(name: str, args_: tuple, block_rows: int, rounds: int, interpret: bool) -> dict:
    """Agreement and (compiled mode only) interleaved median times of one kernel configuration."""
    kernel, reference = functions(name, block_rows, interpret)
    start = time.perf_counter()
    got = jax.block_until_ready(kernel(*args_))
    record = {"block_rows": block_rows, "kernel_first_call_s": time.perf_counter() - start}
    record["max_abs_diff"] = max_abs_diff(got, jax.block_until_ready(reference(*args_)))
    if interpret:
        return record
    times = {"kernel": [], "reference": []}
    for _ in range(rounds):
        for side, fn in (("kernel", kernel), ("reference", reference)):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args_))
            times[side].append(1e3 * (time.perf_counter() - start))
    k_ms, r_ms = statistics.median(times["kernel"]), statistics.median(times["reference"])
    return record | {"kernel_median_ms": k_ms, "reference_median_ms": r_ms, "speedup": r_ms / k_ms,
                     "kernel_min_ms": min(times["kernel"]), "reference_min_ms": min(times["reference"])}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (median reported)")
    parser.add_argument("--block-rows", type=int, nargs="+", default=[8, 32, 128],
                        help="rows of 128 elements per kernel block, each measured")
    parser.add_argument("--width-divisor", type=int, default=1, help="divide the ResNet-18 channels (CPU: 8)")
    parser.add_argument("--kernels", nargs="+", choices=sorted(kernels.DEFAULTS), default=sorted(kernels.DEFAULTS))
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="JSON path (default: results/kernels_<backend>.json)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Runs every kernel configuration (a failure is recorded, not raised); returns 1 if any failed."""
    args = parse_args(argv)
    backend = jax.default_backend()
    interpret = backend == "cpu"
    out = args.out or RESULTS_DIR / f"kernels_{backend}.json"
    loads = workloads(args.width_divisor)
    results, failed = {}, False
    for name in args.kernels:
        description, args_ = loads[name]
        results[name] = {"workload": description, "configs": []}
        for block_rows in args.block_rows:
            try:
                record = measure(name, args_, block_rows, args.rounds, interpret)
            except Exception as err:  # noqa: BLE001 -- a kernel that fails to lower is a result too
                failed = True
                record = {"block_rows": block_rows, "status": "failed",
                          "error": "".join(traceback.format_exception_only(err)).strip()[-2000:]}
            results[name]["configs"].append(record)
            print(name, json.dumps(record), flush=True)
        timed = [c for c in results[name]["configs"] if "speedup" in c]
        best = max(timed, key=lambda c: c["speedup"], default=None)
        results[name]["best_speedup"] = best and best["speedup"]
        results[name]["meets_threshold"] = bool(best and best["speedup"] >= kernels.MIN_SPEEDUP)
    report = {
        "benchmark": "kernels",
        "backend": backend,
        "device": jax.devices()[0].device_kind,
        "mode": "interpret" if interpret else "compiled",
        "note": ("Pallas interpret mode on the CPU is not a speed measurement: agreement only, no timings."
                 if interpret else f"speedup = reference median / kernel median; a default needs >= "
                                   f"{kernels.MIN_SPEEDUP}"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": vars(args) | {"out": str(out)},
        "environment": jax_environment(),
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
