"""Training-step time of the two-ResNet-18 audio-visual model: jaxmm vs eager PyTorch.

The model is the GeWu-Lab/OGM-GE ``concat`` baseline (audio and visual ResNet-18,
concatenation, Linear head) trained with mean softmax cross-entropy and SGD
(momentum 0.9, weight decay 1e-4), on one fixed batch of random data. The jaxmm
step is one ``jax.jit`` over the ``nnx.split`` state (merge inside, split out,
state donated), as DESIGN.md prescribes; the PyTorch step is
:func:`benchmarks.torch_reference.torch_train_step`. Each configuration runs
``--warmup`` untimed steps, then ``--steps`` timed ones, each ended by reading the
loss back to the host; the median is reported.

Defaults are the CREMA-D protocol (batch 64, audio 1x257x188, 3 frames of
3x224x224, 6 classes). On a CPU use a small size, e.g.::

    python -m benchmarks.bench_av_step --batch 4 --image-size 64 --steps 5

Writes ``benchmarks/results/av_step_<device>.json`` and prints Markdown table rows.
"""
from __future__ import annotations

import os

# jax must not pre-allocate most of the GPU: PyTorch shares it in this process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import functools
import json
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

from benchmarks.torch_reference import build_torch_av_model, make_torch_optimizer, torch_train_step
from jaxmm.models.fusion import ConcatFusion, linear_kernel_init
from jaxmm.models.resnet import AudioEncoder, VisualEncoder

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
LEARNING_RATE = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
DTYPES = {"fp32": (None, None), "bf16": (jnp.bfloat16, torch.bfloat16)}  # name -> (jax compute, torch autocast)


class AVConcatModel(nnx.Module):
    """Audio + visual ResNet-18 encoders, concatenation and a Linear head.

    Args:
      num_classes: number of logits.
      dtype: encoder computation dtype (``None``: float32).
      rngs: random streams for initialisation.
    """

    def __init__(self, num_classes: int, *, dtype, rngs: nnx.Rngs):
        self.audio = AudioEncoder(dtype=dtype, rngs=rngs)
        self.visual = VisualEncoder(dtype=dtype, rngs=rngs)
        self.fusion = ConcatFusion({"audio": self.audio.out_features, "visual": self.visual.out_features})
        self.head = nnx.Linear(self.fusion.out_features, num_classes, kernel_init=linear_kernel_init, rngs=rngs)

    def __call__(self, audio: jax.Array, visual: jax.Array) -> jax.Array:
        """Logits ``[B, num_classes]`` from audio ``[B, 1, F, T]`` and a clip ``[B, 3, T, H, W]``."""
        return self.head(self.fusion({"audio": self.audio(audio), "visual": self.visual(visual)}))


def random_batch(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """A fixed random batch in the protocol's layouts (float32 inputs, int labels)."""
    rng = np.random.default_rng(0)
    return {
        "audio": rng.standard_normal((args.batch, 1, *args.audio_size), dtype=np.float32),
        "visual": rng.standard_normal(
            (args.batch, 3, args.frames, args.image_size, args.image_size), dtype=np.float32
        ),
        "label": rng.integers(0, args.num_classes, args.batch),
    }


def jax_step_runner(args: argparse.Namespace, batch: dict[str, np.ndarray], dtype) -> Callable[[], jax.Array]:
    """Builds the model, optimiser and jitted step; returns a closure running one step.

    Args:
      args: command-line options.
      batch: host batch from :func:`random_batch`.
      dtype: encoder computation dtype.

    Returns:
      A function that runs one training step and returns its (asynchronous) loss.
    """
    model = AVConcatModel(args.num_classes, dtype=dtype, rngs=nnx.Rngs(0))
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    opt_state = tx.init(params)

    def loss_fn(params, rest, batch):
        # copy=True: fresh Variables in this (grad) trace, so BatchNorm may update its statistics.
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model(batch["audio"], batch["visual"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, nnx.split(model, nnx.Param, ...)[2]

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def train_step(params, rest, opt_state, batch):
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    device_batch = jax.device_put(batch)

    def run() -> jax.Array:
        nonlocal params, rest, opt_state
        params, rest, opt_state, loss = train_step(params, rest, opt_state, device_batch)
        return loss

    return run


def torch_step_runner(
    args: argparse.Namespace, batch: dict[str, np.ndarray], amp_dtype, device: torch.device
) -> Callable[[], torch.Tensor]:
    """Builds the PyTorch reference on ``device``; returns a closure running one step."""
    model = build_torch_av_model(args.num_classes).to(device)
    opt = make_torch_optimizer(model, lr=LEARNING_RATE)
    device_batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    return functools.partial(torch_train_step, model, opt, device_batch, amp_dtype=amp_dtype)


def time_steps(run: Callable[[], object], warmup: int, steps: int) -> dict[str, float]:
    """Runs ``warmup`` + ``steps`` steps, each synchronised by reading the loss to the host.

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


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--audio-size", type=int, nargs=2, default=(257, 188), metavar=("FREQ", "TIME"))
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--steps", type=int, default=50, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps, the first one compiles")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="JSON path (default: results/av_step_<device>.json)"
    )
    return parser.parse_args()


def main() -> None:
    """Runs the benchmark, writes the JSON results and prints Markdown rows."""
    args = parse_args()
    torch_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    batch = random_batch(args)
    results = {}
    # PyTorch first, then release its cached GPU memory before jax allocates.
    for name in args.dtypes:
        results.setdefault(name, {})["torch"] = time_steps(
            torch_step_runner(args, batch, DTYPES[name][1], torch_device), args.warmup, args.steps
        )
    if torch_device.type == "cuda":
        torch.cuda.empty_cache()
    for name in args.dtypes:
        results[name]["jaxmm"] = time_steps(jax_step_runner(args, batch, DTYPES[name][0]), args.warmup, args.steps)

    device = device_name()
    shape = f"B={args.batch}, audio 1x{args.audio_size[0]}x{args.audio_size[1]}, {args.frames}x3x{args.image_size}^2"
    rows = []
    for name, by_framework in results.items():
        jax_ms, torch_ms = by_framework["jaxmm"]["median_ms"], by_framework["torch"]["median_ms"]
        by_framework["speedup"] = torch_ms / jax_ms
        rows.append(
            f"| av_step | {device} | {shape} | {name} | {jax_ms:.1f} | {torch_ms:.1f} | {torch_ms / jax_ms:.2f}x |"
        )
    out = args.out or RESULTS_DIR / f"av_step_{device}.json"
    report = {
        "benchmark": "av_step",
        "config": vars(args) | {"audio_size": list(args.audio_size), "out": str(out)},
        "environment": {
            "jax_device": jax.devices()[0].device_kind,
            "torch_device": (
                torch.cuda.get_device_name() if torch_device.type == "cuda" else platform.processor() or "cpu"
            ),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "torch": torch.__version__,
            "torch_cudnn_benchmark": torch_device.type == "cuda",
        },
        "results": results,
        "markdown": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("| benchmark | device | shape | dtype | jaxmm ms/step | torch ms/step | torch/jaxmm |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
