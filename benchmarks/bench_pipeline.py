"""Input-pipeline throughput on CREMA-D-sized clips, against the rate a training step consumes.

Writes a CREMA-D folder of ``--clips`` synthetic clips with the real per-example
size (16 kHz mono wavs of ``--seconds`` s, ``--frames`` jpg frames of 480x360
per clip, OGM-GE ``train.csv``/``test.csv``) under ``--workdir``, then times

* **preprocess (cold)**: ``load_dataset("crema_d", ...)`` with an empty cache:
  the reader's wav decoding + log-STFT and jpg decoding + resizing, plus the
  cache write (files were just written, so the OS page cache is warm);
* **cache load**: the same call again, served by the preprocessing cache;
* from the cached train split, per epoch: seeded **batching**
  (:func:`jaxmm.train.batching.batches`), + **augmentation** of the frames
  (RandomResizedCrop + flip + ImageNet normalisation,
  :func:`jaxmm.data.readers.frames.augment`), + **device_put** onto the mesh
  (:func:`jaxmm.train.sharding.shard_batch`, waiting for each transfer), and the
  same through :func:`jaxmm.data.prefetch.prefetch_to_mesh`;
* **overlap**: the last two again, each batch followed by a simulated
  accelerator step (a sleep as long as producing one batch): sequentially the
  times add up, prefetched they should overlap (about twice the rate).

Rates count real examples (the padded tail of the last batch is work, not
examples). The training step's rate comes from
``benchmarks/results/av_step_cpu.json`` (jaxmm fp32 median) or
``--step-ms``/``--step-batch``; the pipeline keeps up when its prefetched rate is
at least the step's. Run::

    python -m benchmarks.bench_pipeline [--clips 256] [--step-ms 18.3 --step-batch 64]

Writes ``benchmarks/results/pipeline_cpu.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import tempfile
import time
from typing import Callable, Iterable, Iterator

import jax
import numpy as np
import PIL
from PIL import Image
from scipy.io import wavfile

from jaxmm.data.prefetch import prefetch_to_mesh
from jaxmm.data.readers import crema_d, frames
from jaxmm.data.registry import load_dataset
from jaxmm.data.types import Batch
from jaxmm.train.batching import batches, epoch_permutations, stack_runs
from jaxmm.train.sharding import make_data_mesh, shard_batch

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


def augmented(stream: Iterable[Batch], rng: np.random.Generator) -> Iterator[Batch]:
    """Applies the train-time frame augmentation to each batch's ``visual`` input."""
    for batch in stream:
        yield batch._replace(inputs={**batch.inputs, "visual": frames.augment(batch.inputs["visual"], rng)})


def timed_epochs(make_stream: Callable[[int], Iterable], consume: Callable, epochs: int) -> tuple[float, int]:
    """Seconds to run ``consume`` on every item of ``make_stream(epoch)`` for ``epochs`` epochs, and the item count."""
    start, count = time.perf_counter(), 0
    for epoch in range(epochs):
        for item in make_stream(epoch):
            consume(item)
            count += 1
    return time.perf_counter() - start, count


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


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="wav length")
    parser.add_argument("--frames", type=int, default=3, help="jpg frames per clip (and per example)")
    parser.add_argument("--image-size", type=int, default=224, help="stored and augmented frame side")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per pipeline variant")
    parser.add_argument("--prefetch", type=int, default=2, help="batches kept ready on the mesh")
    parser.add_argument("--step-ms", type=float, default=None, help="training step time (default: av_step_cpu.json)")
    parser.add_argument("--step-batch", type=int, default=64, help="batch of --step-ms")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="fixture folder (default: a temp dir)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS_DIR / "pipeline_cpu.json")
    return parser.parse_args()


def main() -> None:
    """Builds the fixture, times every stage, writes the JSON report and prints a Markdown table."""
    args = parse_args()
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
    order = lambda epoch: epoch_permutations([0], epoch, n)
    host = lambda epoch: batches(data, order(epoch), args.batch)
    aug = lambda epoch: augmented(host(epoch), np.random.default_rng([0, epoch]))
    variants = {
        "batching": (host, lambda b: None),
        "+ augmentation": (aug, lambda b: None),
        "+ device_put": (aug, lambda b: jax.block_until_ready(shard_batch(b, mesh))),
        f"+ prefetch_to_mesh({args.prefetch})": (lambda e: prefetch_to_mesh(aug(e), mesh, args.prefetch),
                                                 jax.block_until_ready),
    }
    timed_epochs(*variants["+ device_put"], 1)  # warm-up: first transfers, allocator
    stages = {"preprocess (cold)": {"examples": args.clips, "seconds": cold_s},
              "cache load": {"examples": args.clips, "seconds": warm_s}}
    count = {}
    for name, (stream, consume) in variants.items():
        seconds, count[name] = timed_epochs(stream, consume, args.epochs)
        stages[name] = {"examples": args.epochs * n, "seconds": seconds}
    # An accelerator step as long as producing one batch, modelled by a sleep (it leaves the host CPU free):
    # sequentially the two add up, with prefetching they overlap.
    step_s = stages["+ device_put"]["seconds"] / count["+ device_put"]
    for name, base in (("sequential", "+ device_put"), ("prefetched", f"+ prefetch_to_mesh({args.prefetch})")):
        stream, consume = variants[base]
        seconds, _ = timed_epochs(stream, lambda b: (consume(b), time.sleep(step_s)), args.epochs)
        stages[f"{name} + {step_s * 1000:.0f} ms simulated step"] = {"examples": args.epochs * n, "seconds": seconds}
    for stage in stages.values():
        stage["examples_per_s"] = stage["examples"] / stage["seconds"]
    step = step_rate(args)
    pipeline = stages[f"+ prefetch_to_mesh({args.prefetch})"]["examples_per_s"]
    keeps_up = None if step["examples_per_s"] is None else pipeline >= step["examples_per_s"]

    rows = [f"| {name} | {s['examples']} | {s['seconds']:.2f} | {s['examples_per_s']:.1f} |"
            for name, s in stages.items()]
    if step["examples_per_s"] is not None:
        rows.append(f"| training step: {step['source']} | | {step['ms_per_step'] / 1000:.3f} per step | "
                    f"{step['examples_per_s']:.2f} |")
    verdict = ("unknown (no step time)" if keeps_up is None else
               f"{'yes' if keeps_up else 'NO'}: pipeline {pipeline:.1f} ex/s vs step {step['examples_per_s']:.2f} "
               f"ex/s ({pipeline / step['examples_per_s']:.3g}x)")
    report = {
        "benchmark": "pipeline",
        "config": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()}
        | {"frame_hw": FRAME_HW, "train_examples": n, "fixture_write_s": fixture_s},
        "machine": machine(),
        "stages": stages,
        "step": step,
        "keeps_up": keeps_up,
        "verdict": verdict,
        "markdown": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"CREMA-D fixture: {args.clips} clips of {args.seconds:g} s + {args.frames} frames "
          f"{FRAME_HW[1]}x{FRAME_HW[0]} -> {args.image_size}^2; batch {args.batch}; {n} train examples")
    print("| stage | examples | seconds | examples/s |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    print(f"pipeline keeps up with the step: {verdict}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
