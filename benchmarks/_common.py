"""Helpers shared by the step-time benchmarks: timing loop, device name, machine description."""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable

import flax
import jax


def time_steps(run: Callable[[], object], warmup: int, steps: int) -> dict[str, float]:
    """Runs ``warmup`` + ``steps`` steps, each synchronised by reading the loss to the host.

    Args:
      run: runs one step and returns its loss (a scalar array or tensor).
      warmup: untimed steps; the first one includes compilation.
      steps: timed steps.

    Returns:
      ``first_step_s`` (includes compilation), ``median_ms``/``min_ms``/``max_ms``
      over the timed steps, and the last loss.
    """
    start = time.perf_counter()
    float(run())
    first_step_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        float(run())
    times, loss = [], float("nan")
    for _ in range(steps):
        start = time.perf_counter()
        loss = float(run())
        times.append(1e3 * (time.perf_counter() - start))
    return {
        "first_step_s": first_step_s,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "last_loss": loss,
    }


def device_name() -> str:
    """File-name-safe name of the first jax device, e.g. ``cpu`` or ``nvidia_h100_80gb_hbm3``."""
    return re.sub(r"[^a-z0-9]+", "_", jax.devices()[0].device_kind.lower()).strip("_")


def jax_environment() -> dict:
    """The jax side of the machine: device, CPU count and load, library versions."""
    return {
        "jax_device": jax.devices()[0].device_kind,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": os.getloadavg(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
    }


def add_protocol_args(parser: argparse.ArgumentParser, steps: int, warmup: int) -> None:
    """Adds the CREMA-D-shaped input sizes (defaults: the protocol's) and the step counts to ``parser``."""
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--audio-size", type=int, nargs=2, default=(257, 188), metavar=("FREQ", "TIME"))
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--steps", type=int, default=steps, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps, the first one compiles")


def round_robin(runners: dict, steps: int) -> dict[str, list[float]]:
    """``steps`` rounds of one step of every method in turn, each ended by reading its loss to the host.

    Returns:
      method -> step times in ms.
    """
    times = {name: [] for name in runners}
    for _ in range(steps):
        for name, run in runners.items():
            start = time.perf_counter()
            float(run())
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def machine_name() -> str:
    """CPU model and core count (or the accelerator's name)."""
    kind = jax.devices()[0].device_kind
    if jax.devices()[0].platform != "cpu":
        return kind
    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"
