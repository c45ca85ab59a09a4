"""Training-step time of the two-ResNet-18 audio-visual model: jaxmm vs eager PyTorch.

The model is the GeWu-Lab/OGM-GE ``concat`` baseline (audio and visual ResNet-18,
concatenation, Linear head) trained with mean softmax cross-entropy and SGD
(momentum 0.9, weight decay 1e-4), on one fixed batch of random data. The jaxmm
model is the trainer's own :class:`~jaxmm.models.multimodal.MultimodalClassifier`
built from the ``crema_d`` protocol's model config (without unimodal heads); its
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
import dataclasses
import functools
import json
import pathlib
import platform
from collections.abc import Callable

import jax
import numpy as np
import optax
import torch
from flax import nnx

from benchmarks._common import add_protocol_args, device_name, jax_environment, time_steps
from benchmarks.torch_reference import build_torch_av_model, make_torch_optimizer, torch_train_step
from jaxmm.models.multimodal import MultimodalClassifier
from jaxmm.train.protocols import protocol

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
LEARNING_RATE = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
DTYPES = {"fp32": ("float32", None), "bf16": ("bfloat16", torch.bfloat16)}  # name -> (jax compute, torch autocast)


def build_jax_model(args: argparse.Namespace, dtype: str) -> MultimodalClassifier:
    """The trainer's audio-visual classifier (``crema_d`` protocol, concat + Linear, no unimodal heads).

    Args:
      args: command-line options (input sizes, classes).
      dtype: compute dtype name, ``float32`` or ``bfloat16``.
    """
    cfg = dataclasses.replace(protocol("crema_d").model, dtype=dtype)
    shapes = {"audio": (1, *args.audio_size), "visual": (3, args.frames, args.image_size, args.image_size)}
    return MultimodalClassifier(shapes, args.num_classes, cfg, unimodal_heads=False, rngs=nnx.Rngs(0))


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
      dtype: encoder compute dtype name.

    Returns:
      A function that runs one training step and returns its (asynchronous) loss.
    """
    model = build_jax_model(args, dtype)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    opt_state = tx.init(params)

    def loss_fn(params, rest, batch):
        # copy=True: fresh Variables in this (grad) trace, so BatchNorm may update its statistics.
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = model({"audio": batch["audio"], "visual": batch["visual"]}).logits
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
    """Builds the PyTorch reference on ``device`` (compiled with ``torch.compile`` under ``--torch-compile``);
    returns a closure running one step."""
    model = build_torch_av_model(args.num_classes).to(device)
    opt = make_torch_optimizer(model, lr=LEARNING_RATE)
    if args.torch_compile:  # the optimiser holds the parameters; the compiled module shares them
        model = torch.compile(model)
    device_batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    return functools.partial(torch_train_step, model, opt, device_batch, amp_dtype=amp_dtype)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_protocol_args(parser, steps=50, warmup=5)
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--torch-compile", action="store_true",
                        help="time PyTorch with torch.compile instead of eager (the warm-up steps compile)")
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
            **jax_environment(),
            "torch_device": (
                torch.cuda.get_device_name() if torch_device.type == "cuda" else platform.processor() or "cpu"
            ),
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
