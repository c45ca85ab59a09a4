"""The Quick start's Spurious-XOR grid end to end: wall and CPU seconds of the whole command, cold and warm.

Each repeat runs ``jaxmm experiment spurious-xor`` (84 runs: 4 methods × 7 α × 3 seeds, 100 epochs)
in a fresh process: *cold* with an empty persistent compilation cache, *warm* with the cache an
earlier cold run of the same variant filled. Variants are ``--workers`` values of the experiment
(methods trained at once); their repeats are interleaved so that machine load hits all alike.
Recorded: wall seconds from process start to exit, and the user + system CPU seconds of the
process (``resource.getrusage``), a second measure that load on a shared machine disturbs less.

    python -m benchmarks.bench_spurious_xor_grid [--repeats 3] [--workers 1,default] [--warm]

Writes ``benchmarks/results/spurious_xor_grid_wall_cpu.json`` (``--out``); the target is a cold
median of at most 30 s on the 2-core CPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 30.0
DEFAULT = "default"


def summarize(values: list[float]) -> dict:
    """``min``/``median``/``max`` of ``values`` (rounded to 0.1) and the values in run order."""
    return {"min": round(min(values), 1), "median": round(statistics.median(values), 1),
            "max": round(max(values), 1), "runs": [round(v, 1) for v in values]}


def timed_run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``jaxmm experiment spurious-xor ARGS`` in a fresh process.

    Raises:
      RuntimeError: the command failed (its last output lines are in the message).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jaxmm.cli", "experiment", "spurious-xor", *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f"jaxmm experiment spurious-xor {' '.join(args)} failed:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> None:
    """Times the variants' cold (and with ``--warm`` warm) runs, interleaved, and writes the JSON record."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="cold runs per variant (default 3)")
    p.add_argument("--workers", default=f"1,{DEFAULT}",
                   help=f"comma-separated --workers values to compare ('{DEFAULT}': the experiment's own)")
    p.add_argument("--warm", action="store_true", help="also time a warm run after each cold one")
    p.add_argument("--experiment-args", default="", metavar="ARGS",
                   help="extra options of the experiment, e.g. '--epochs 5 --seeds 0' (a smaller grid)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "spurious_xor_grid_wall_cpu.json"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    variants = [w.strip() for w in args.workers.split(",") if w.strip()]
    bad = [w for w in variants if w != DEFAULT and not (w.isdigit() and int(w) >= 1)]
    if bad:
        p.error(f"--workers takes positive integers or '{DEFAULT}', got {bad}")
    extra = args.experiment_args.split()
    times = {w: {"cold_wall": [], "cold_cpu": [], "warm_wall": [], "warm_cpu": []} for w in variants}
    load = [os.getloadavg()]
    for repeat in range(args.repeats):
        for w in variants:
            scratch = tempfile.mkdtemp(prefix="jaxmm-grid-")
            try:
                run_args = ["--out-dir", os.path.join(scratch, "runs"), "--compile-cache",
                            os.path.join(scratch, "xla"), *([] if w == DEFAULT else ["--workers", w]), *extra]
                for kind in ("cold", "warm") if args.warm else ("cold",):
                    wall, cpu = timed_run([*run_args, "--overwrite"])
                    times[w][f"{kind}_wall"].append(wall)
                    times[w][f"{kind}_cpu"].append(cpu)
                    print(f"repeat {repeat + 1}/{args.repeats} workers={w} {kind}: {wall:.1f} s wall, "
                          f"{cpu:.1f} s CPU", flush=True)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        load.append(os.getloadavg())
    results = {}
    for w, t in times.items():
        results[f"workers={w}"] = {k: summarize(v) for k, v in t.items() if v}
    best = min(statistics.median(t["cold_wall"]) for t in times.values())
    record = {
        "benchmark": "spurious_xor_grid_wall",
        "command": "jaxmm experiment spurious-xor --out-dir DIR --compile-cache FRESH_DIR [--workers N] "
                   + args.experiment_args,
        "grid": "4 methods x 7 alphas x 3 seeds = 84 runs, 100 epochs" if not extra else args.experiment_args,
        "reproduce": f"python -m benchmarks.bench_spurious_xor_grid --repeats {args.repeats} --workers {args.workers}"
                     + (" --warm" if args.warm else "")
                     + (f" --experiment-args '{args.experiment_args}'" if extra else ""),
        "machine": {"cpu_count": os.cpu_count(), "load_average_1_5_15_before_each_round": load},
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": results,
        "target_cold_median_s": TARGET_S,
        "best_cold_median_s": round(best, 1),
        "meets_target": best <= TARGET_S,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
