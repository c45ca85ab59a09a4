"""Spurious-XOR grid: jaxmm's vmapped trainer vs a sequential PyTorch loop, in one script.

Times the whole α × seed grid (21 runs) for each method, end to end (data on
host, compilation included for jaxmm), and reports PyTorch time / jaxmm time.

    python -m benchmarks.bench_spurious_xor [--epochs 100] [--methods vanilla,synib-random,synib-learned]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from benchmarks.torch_spurious_xor import train_one
from jaxmm.experiments.spurious_xor import ALPHAS, METHODS, run

TORCH_OPTIONS = {"vanilla": dict(mask=None, lr=1e-2, wd=1e-3), "synib-oracle": dict(mask="oracle"),
                 "synib-random": dict(mask="random"), "synib-learned": dict(mask="learned")}


def torch_grid(name: str, epochs: int, seeds) -> tuple[float, list[float]]:
    """Sequential PyTorch runs over the grid; returns (seconds, accuracies)."""
    import torch

    from jaxmm.data.synthetic import spurious_xor

    torch.set_num_threads(os.cpu_count() or 1)
    accs, start = [], time.perf_counter()
    for a in ALPHAS:
        for s in seeds:
            sp = spurious_xor.splits(s, a)
            data = {"x0": sp.train.inputs["x0"], "x1": sp.train.inputs["x1"], "y": sp.train.label,
                    "tx0": sp.test.inputs["x0"], "tx1": sp.test.inputs["x1"], "ty": sp.test.label}
            accs.append(train_one(data, epochs=epochs, seed=s, **TORCH_OPTIONS[name]))
    return time.perf_counter() - start, accs


def main(argv=None) -> None:
    """Runs both implementations per method and writes ``benchmarks/results/spurious_xor_<device>.json``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--methods", default="vanilla,synib-random,synib-learned")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    device = jax.devices()[0]
    rows = []
    for name in args.methods.split(","):
        if name not in METHODS:
            raise SystemExit(f"unknown method {name!r}; choose from {list(METHODS)}")
        start = time.perf_counter()
        acc = run((name,), ALPHAS, seeds, args.epochs, out_dir="/tmp/jaxmm-bench", progress=False, overwrite=True)
        jax_s = time.perf_counter() - start
        torch_s, torch_acc = torch_grid(name, args.epochs, seeds)
        jax_acc = [v for a in ALPHAS for v in acc[(name, a)]]
        rows.append({"method": name, "runs": len(jax_acc), "epochs": args.epochs, "jaxmm_s": jax_s,
                     "torch_s": torch_s, "torch_over_jaxmm": torch_s / jax_s,
                     "jaxmm_mean_acc": float(np.mean(jax_acc)), "torch_mean_acc": float(np.mean(torch_acc))})
        print(f"| {name} | {len(jax_acc)} | {jax_s:.1f} | {torch_s:.1f} | {torch_s / jax_s:.2f}x | "
              f"{np.mean(jax_acc):.3f} | {np.mean(torch_acc):.3f} |", flush=True)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "jax_device": str(device), "jax": jax.__version__}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"spurious_xor_{device.platform}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
