"""Input-pipeline throughput on CREMA-D-sized clips: today's host augmentation against device augmentation.

Writes a CREMA-D folder of ``--clips`` synthetic clips with the real per-example
size (16 kHz mono wavs of ``--seconds`` s, ``--frames`` jpg frames of 480x360
per clip, OGM-GE ``train.csv``/``test.csv``) under ``--workdir``, then times

* **preprocess (cold)**: ``load_dataset("crema_d", ...)`` with an empty cache
  (wav decoding + log-STFT, jpg decoding + resizing, cache write);
* **cache load**: the same call again, served by the preprocessing cache;
* end to end **from the cached train split to batches on the mesh** (every batch
  waited for with ``block_until_ready``; ``uint8 [T, S, S, 3]`` frames plus the
  ``float32 [257, 188, 1]`` spectrogram per example), in ``--rounds`` interleaved
  rounds of ``--epochs`` epochs each (the median round is reported, and the
  new/today ratio per round, so a busy machine slows both alike). Rates are
  steady state: each round's first batch (starting threads or worker
  processes) is timed apart (``first_batch_s``):

  - **today**: seeded batching (:func:`jaxmm.train.batching.batches`) + the
    per-frame RandomResizedCrop + flip on the host with PIL
    (:func:`jaxmm.data.readers.frames.crop_flip`, one generator per run seeded by
    ``(seed, epoch)``, as the loop did) + :func:`jaxmm.data.prefetch.prefetch_to_mesh`;
  - **new**: batching + ``prefetch_to_mesh`` only: the crop and flip run on the
    device inside the train step (:mod:`jaxmm.data.augment`). Its rate is
    ``end_to_end_examples_per_s``; its parts (batching alone, + ``device_put``
    without prefetching) are timed too;
  - **grain**: a ``grain.DataLoader`` (a random-access source over the cached
    arrays, a shuffling ``IndexSampler``, ``Batch``) with ``--grain-workers``
    worker processes, padded to whole batches, + ``prefetch_to_mesh``; skipped
    (and said so) when grain is not installed (``pip install grain``).

* **device augmentation**: the jitted crop + flip of one CREMA-D batch on the
  jax device (examples/s), and its share of a train step: the trainer's step
  (vanilla method, the ``crema_d`` protocol's two ResNet-18s) with and without
  ``augment_frames`` at ``--step-fraction-batch`` x ``--step-fraction-size``
  frames (a CPU cannot run the full-size step in reasonable time; crop and
  ResNet both scale with the pixels).

Rates count real examples (the padded tail of the last batch is work, not
examples). The training step's rate comes from ``--step-ms``/``--step-batch`` or
``benchmarks/results/av_step_cpu.json``. Run::

    python -m benchmarks.bench_pipeline [--clips 256] [--rounds 5] [--grain-workers 0 1 2]

Writes ``benchmarks/results/pipeline_cpu.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
import PIL
from PIL import Image
from scipy.io import wavfile

from benchmarks._common import round_robin, time_steps
from jaxmm.data.augment import random_resized_crop_flip
from jaxmm.data.prefetch import prefetch_to_mesh
from jaxmm.data.readers import crema_d, frames
from jaxmm.data.registry import load_dataset
from jaxmm.data.types import Batch
from jaxmm.methods import get_method
from jaxmm.tasks import task_of
from jaxmm.train.batching import batches, epoch_permutations, stack_runs
from jaxmm.train.protocols import protocol
from jaxmm.train.sharding import make_data_mesh, replicate, shard_batch
from jaxmm.train.trainer import Trainer, resolve_hparams

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
SAMPLE_RATE = 16000
FRAME_HW = (360, 480)  # CREMA-D VideoFlash resolution
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


def clip_names(n: int) -> list[str]:
    """``n`` CREMA-D clip names, cycling emotions, then actors, then sentences."""
    emotions = crema_d.LABEL_ORDERS["ogm"]
    names = [f"{a}_{s}_{e}_XX" for s in SENTENCES for a in range(1001, 1092) for e in emotions]
    if n > len(names):
        raise ValueError(f"at most {len(names)} distinct clip names, asked for {n}")
    return names[:n]


def write_fixture(root: pathlib.Path, n: int, seconds: float, num_frames: int) -> None:
    """Writes ``n`` clips in the CREMA-D + OGM-GE layout (90% of them in ``train.csv``)."""
    rng = np.random.default_rng(0)
    names = clip_names(n)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    yy, xx = np.mgrid[:FRAME_HW[0], :FRAME_HW[1]]
    (root / "AudioWAV").mkdir(parents=True)
    for i, name in enumerate(names):
        f0 = rng.uniform(90, 250)  # a voiced, amplitude-modulated harmonic tone plus noise
        voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (1 + np.sin(2 * np.pi * 3 * t))
        x = 0.1 * voice + 0.02 * rng.standard_normal(len(t))
        wavfile.write(root / "AudioWAV" / f"{name}.wav", SAMPLE_RATE, (np.clip(x, -1, 1) * 32767).astype(np.int16))
        folder = root / "Image-01-FPS" / name
        folder.mkdir(parents=True)
        for k in range(num_frames):
            base = np.stack([(xx * (c + 1) + yy * (k + 2) + 17 * i) % 256 for c in range(3)], -1)
            image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{k + 1:05d}.jpg", quality=90)
    cut = int(0.9 * n)
    for file, part in (("train.csv", names[:cut]), ("test.csv", names[cut:])):
        (root / file).write_text("".join(f"{name},{name.split('_')[2]}\n" for name in part))


def host_augmented(stream: Iterable[Batch], seeds: Sequence[int], epoch: int) -> Iterator[Batch]:
    """Today's pipeline: every run's ``visual`` frames cropped and flipped on the host with PIL.

    One numpy generator per run seeded by ``(seed, epoch)``, as the training loop did before the
    augmentation moved onto the device.
    """
    rngs = [np.random.default_rng([int(s), int(epoch), 1]) for s in seeds]
    for batch in stream:
        visual = np.stack([frames.crop_flip(x, rng) for x, rng in zip(batch.inputs["visual"], rngs)])
        yield batch._replace(inputs={**batch.inputs, "visual": visual})


class CachedSource:
    """A grain random-access source over one run's cached split: example ``i`` as a dict of arrays."""

    def __init__(self, data: Batch):
        self.inputs = {k: v[0] for k, v in data.inputs.items()}
        self.label = data.label[0]

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": {k: v[i] for k, v in self.inputs.items()}, "label": self.label[i], "index": i}


def grain_batches(data: Batch, batch_size: int, epochs: int, workers: int) -> Iterator[Batch]:
    """``epochs`` shuffled epochs of ``data`` through a ``grain.DataLoader`` as ``[1, B, ...]`` batches.

    grain batches across epoch boundaries; only the very last batch is padded (``meta["valid"]``).
    """
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags
        flags.FLAGS(sys.argv[:1])
    source = CachedSource(data)
    sampler = grain.samplers.IndexSampler(num_records=len(source), shard_options=grain.sharding.NoSharding(),
                                          shuffle=True, num_epochs=epochs, seed=0)
    loader = grain.DataLoader(data_source=source, sampler=sampler, worker_count=workers,
                              operations=[grain.transforms.Batch(batch_size, drop_remainder=False)])
    for item in loader:
        size = len(item["label"])
        pad = lambda x: np.concatenate([x, np.repeat(x[:1], batch_size - size, axis=0)])[None] \
            if size < batch_size else x[None]
        valid = (np.arange(batch_size) < size).astype(np.float32)[None]
        yield Batch(inputs={k: pad(v) for k, v in item["inputs"].items()}, label=pad(item["label"]),
                    index=pad(item["index"].astype(np.int32)), meta={"valid": valid})


def timed(stream: Iterable, consume: Callable, count: Callable[[object], int]) -> tuple[float, int, float]:
    """Times ``consume`` over ``stream`` after its first item (which starts threads or worker processes).

    Returns:
      (seconds after the first item, examples after it (``count(item)`` each), seconds to the first).
    """
    start = time.perf_counter()
    items = iter(stream)
    consume(next(items))
    first, examples = time.perf_counter(), 0
    for item in items:
        consume(item)
        examples += count(item)
    return time.perf_counter() - first, examples, first - start


def device_augmentation(args: argparse.Namespace) -> dict:
    """Device-side crop + flip: alone on one protocol-size batch, and as a share of a (smaller) train step.

    The share is measured two ways on the step's own shapes: the crop + flip alone over the step without
    it, and the difference between the trainer's step with and without ``augment_frames`` (timed in turn,
    ``--step-steps`` rounds: on a busy machine the difference of two medians is the noisier number).
    """
    rng = np.random.default_rng(0)
    augment = jax.jit(random_resized_crop_flip)

    def alone(shape) -> float:
        clip = jax.device_put(rng.integers(0, 256, shape, dtype=np.uint8))
        return time_steps(lambda: augment(jax.random.PRNGKey(0), clip)[(0,) * len(shape)], args.step_warmup,
                          args.step_steps)["median_ms"]

    full = (args.batch, args.frames, args.image_size, args.image_size, 3)
    full_ms = alone(full)
    report = {"batch_shape": list(full), "ms_per_batch": full_ms, "examples_per_s": args.batch * 1000.0 / full_ms}
    batch_size, side = args.step_fraction_batch, args.step_fraction_size
    shapes = {"audio": (257, 188, 1), "visual": (args.frames, side, side, 3)}
    host = Batch(inputs={"audio": rng.standard_normal((1, batch_size, *shapes["audio"]), dtype=np.float32),
                         "visual": rng.integers(0, 256, (1, batch_size, *shapes["visual"]), dtype=np.uint8)},
                 label=rng.integers(0, 6, (1, batch_size)).astype(np.int32),
                 index=np.arange(batch_size, dtype=np.int32)[None], meta={})
    method, cfg = get_method("vanilla"), protocol("crema_d")
    runners = {}
    for name, modalities in (("without", ()), ("with", ("visual",))):
        trainer = Trainer(method, shapes, task_of("classification", 6), cfg.model, cfg.optimizer,
                          steps_per_epoch=100, augment_frames=modalities)
        hp = replicate(resolve_hparams(method, cfg.optimizer, [{}]), trainer.mesh)
        batch = shard_batch(host, trainer.mesh)
        state = {"state": trainer.init([0], hp, jax.tree.map(lambda x: x[0], host))}

        def run(trainer=trainer, hp=hp, batch=batch, state=state):
            state["state"], metrics = trainer.step(state["state"], batch, hp)
            return metrics["loss"][0]

        for _ in range(args.step_warmup):
            float(run())
        runners[name] = run
    times = {name: statistics.median(t) for name, t in round_robin(runners, args.step_steps).items()}
    crop_ms = alone((batch_size, *shapes["visual"]))
    report["step"] = {"batch": batch_size, "image_size": side, "frames": args.frames,
                      "ms_without_augmentation": times["without"], "ms_with_augmentation": times["with"],
                      "ms_crop_flip_alone": crop_ms, "fraction_alone": crop_ms / times["without"],
                      "fraction_in_step": (times["with"] - times["without"]) / times["with"]}
    return report


def step_rate(args: argparse.Namespace) -> dict:
    """Examples/s a training step consumes: from ``--step-ms`` or ``av_step_cpu.json``."""
    if args.step_ms is not None:
        return {"source": "--step-ms", "ms_per_step": args.step_ms, "batch": args.step_batch,
                "examples_per_s": args.step_batch * 1000.0 / args.step_ms}
    path = RESULTS_DIR / "av_step_cpu.json"
    if not path.exists():
        return {"source": f"{path} not found; pass --step-ms", "examples_per_s": None}
    report = json.loads(path.read_text())
    ms, batch = report["results"]["fp32"]["jaxmm"]["median_ms"], report["config"]["batch"]
    return {"source": f"{path.name} (jaxmm fp32 median, B={batch}, frames {report['config']['image_size']}^2)",
            "ms_per_step": ms, "batch": batch, "examples_per_s": batch * 1000.0 / ms}


def machine() -> dict:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg(),
            "jax_devices": [d.device_kind for d in jax.devices()], "python": platform.python_version(),
            "jax": jax.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="wav length")
    parser.add_argument("--frames", type=int, default=3, help="jpg frames per clip (and per example)")
    parser.add_argument("--image-size", type=int, default=224, help="stored and augmented frame side")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per pipeline variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--prefetch", type=int, default=2, help="batches kept ready on the mesh")
    parser.add_argument("--grain-workers", type=int, nargs="*", default=[0, 1, 2],
                        help="grain DataLoader worker counts to time (none: skip grain)")
    parser.add_argument("--step-fraction-batch", type=int, default=4, help="batch of the augmentation-share step")
    parser.add_argument("--step-fraction-size", type=int, default=64, help="frame side of that step")
    parser.add_argument("--step-steps", type=int, default=5, help="timed steps (device augmentation, its share)")
    parser.add_argument("--step-warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--step-ms", type=float, default=None, help="training step time (default: av_step_cpu.json)")
    parser.add_argument("--step-batch", type=int, default=64, help="batch of --step-ms")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="fixture folder (default: a temp dir)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS_DIR / "pipeline_cpu.json")
    return parser.parse_args(argv)


TODAY, NEW = "today: host PIL crop/flip + prefetch_to_mesh", "new: prefetch_to_mesh (crop/flip on the device)"


def pipelines(args: argparse.Namespace, data: Batch, mesh) -> dict[str, Callable[[], tuple[float, int, float]]]:
    """Name -> a function timing ``args.epochs`` epochs of that pipeline (:func:`timed`)."""
    n = data.label.shape[1]
    real = lambda b: int(np.asarray(b.meta["valid"]).sum())
    host = lambda epoch: batches(data, epoch_permutations([0], epoch, n), args.batch)
    epochs = lambda make: (b for e in range(args.epochs) for b in make(e))
    wait = jax.block_until_ready
    variants = {
        "batching (host gather only)": lambda: timed(epochs(host), lambda b: None, real),
        "batching + device_put (no prefetch)": lambda: timed(epochs(host), lambda b: wait(shard_batch(b, mesh)), real),
        NEW: lambda: timed(prefetch_to_mesh(epochs(host), mesh, args.prefetch), wait, real),
        TODAY: lambda: timed(prefetch_to_mesh(epochs(lambda e: host_augmented(host(e), [0], e)), mesh,
                                              args.prefetch), wait, real),
    }
    grain_workers = args.grain_workers if importlib.util.find_spec("grain") else []  # optional (bench extra)
    for workers in grain_workers:
        variants[f"grain DataLoader ({workers} workers) + prefetch_to_mesh"] = lambda workers=workers: timed(
            prefetch_to_mesh(grain_batches(data, args.batch, args.epochs, workers), mesh, args.prefetch), wait, real)
    return variants


def main(argv: Sequence[str] | None = None) -> dict:
    """Builds the fixture, times every pipeline, writes the JSON report, prints a Markdown table; returns the report."""
    args = parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="jaxmm-bench-pipeline-", dir=args.workdir))
    try:
        start = time.perf_counter()
        write_fixture(work / "crema", args.clips, args.seconds, args.frames)
        fixture_s = time.perf_counter() - start
        load = lambda: load_dataset("crema_d", 0, data_dir=work / "crema", cache_dir=work / "cache",
                                    num_frames=args.frames, image_size=args.image_size)
        start = time.perf_counter()
        splits = load()
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        splits = load()
        warm_s = time.perf_counter() - start
    finally:
        shutil.rmtree(work)

    data, n = stack_runs([splits.train]), len(splits.train)
    mesh = make_data_mesh()
    variants = pipelines(args, data, mesh)
    grain_error = None if importlib.util.find_spec("grain") else "grain is not installed: pip install grain"
    if grain_error:
        variants = {k: v for k, v in variants.items() if not k.startswith("grain")}
    variants["batching + device_put (no prefetch)"]()  # warm-up: first transfers, allocator
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    first_batch_s: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):  # interleaved, so a change in the machine's load hits every variant
        for name, run in variants.items():
            seconds, examples, first = run()
            rounds[name].append(examples / seconds)
            first_batch_s[name].append(first)
    stages = {"preprocess (cold)": {"examples": args.clips, "seconds": cold_s, "examples_per_s": args.clips / cold_s},
              "cache load": {"examples": args.clips, "seconds": warm_s, "examples_per_s": args.clips / warm_s}}
    stages |= {name: {"examples_per_s": statistics.median(r), "rounds": r,
                      "first_batch_s": statistics.median(first_batch_s[name])} for name, r in rounds.items()}
    ratios = [new / old for new, old in zip(rounds[NEW], rounds[TODAY]) if old > 0]  # 0: one batch per round
    end_to_end = stages[NEW]["examples_per_s"]
    grain_rates = {k: v["examples_per_s"] for k, v in stages.items() if k.startswith("grain")}
    best_grain = max(grain_rates.values(), default=None)
    grain_verdict = grain_error or ("not measured (no --grain-workers)" if best_grain is None else
        f"{'at least as fast' if best_grain >= end_to_end else 'slower'}: best grain {best_grain:.0f} ex/s vs "
        f"hand-written {end_to_end:.0f} ex/s ({best_grain / end_to_end:.2f}x)")
    device = device_augmentation(args)
    step = step_rate(args)
    keeps_up = None if step["examples_per_s"] is None else end_to_end >= step["examples_per_s"]

    rows = [f"| {name} | {s['examples_per_s']:.0f} |" for name, s in stages.items()]
    if ratios:
        rows.append(f"| new / today (median of {len(ratios)} rounds) | {statistics.median(ratios):.1f}x |")
    rows.append(f"| device crop+flip alone, batch {device['batch_shape']} on {jax.devices()[0].device_kind} | "
                f"{device['examples_per_s']:.0f} |")
    step_cfg = f"B={device['step']['batch']}, {device['step']['image_size']}^2 frames"
    rows.append(f"| device crop+flip alone / train step ({step_cfg}) | "
                f"{100 * device['step']['fraction_alone']:.1f} % |")
    rows.append(f"| train step with - without device crop+flip ({step_cfg}) | "
                f"{100 * device['step']['fraction_in_step']:.1f} % |")
    report = {
        "benchmark": "pipeline",
        "end_to_end_examples_per_s": end_to_end,
        "today_examples_per_s": stages[TODAY]["examples_per_s"],
        "new_over_today": {"median": statistics.median(ratios) if ratios else None, "rounds": ratios},
        "machine": machine(),
        "config": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()}
        | {"frame_hw": FRAME_HW, "train_examples": n, "fixture_write_s": fixture_s,
           "example": {k: [str(v.dtype), list(v.shape[2:])] for k, v in data.inputs.items()}},
        "stages": stages,
        "grain": {"examples_per_s": grain_rates, "verdict": grain_verdict},
        "device_augmentation": device,
        "step": step,
        "keeps_up": keeps_up,
        "markdown": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"CREMA-D fixture: {args.clips} clips of {args.seconds:g} s + {args.frames} frames "
          f"{FRAME_HW[1]}x{FRAME_HW[0]} -> {args.image_size}^2; batch {args.batch}; {n} train examples; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| stage | examples/s |")
    print("|---|---|")
    print("\n".join(rows))
    print(f"grain: {grain_verdict}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
