"""Collectives in every method's compiled train step, ``parallel="auto"`` against ``"shard_map"``, from the HLO.

For every registered method the real jitted step (``Trainer._step``, what :meth:`Trainer.step
<jaxmm.train.trainer.Trainer.step>` calls; one run, a fixed random batch sharded over ``--devices``
devices) is lowered and compiled under each mode, and the optimised HLO
(``compiled.as_text()``) is parsed by :func:`count_collectives`: the number of all-reduces,
all-gathers, reduce-scatters, collective-permutes and all-to-alls, and the bytes each moves.
Modes: ``auto`` (the compiler partitions one ``jax.jit`` program), ``shard_map`` (the step
written per device, synchronised BatchNorm) and, for a model with BatchNorm, ``shard_map_local_bn``
(each device normalises its own rows). Nothing runs: the counts are those of the program.

Counting rules: an asynchronous pair (``all-reduce-start`` ... ``all-reduce-done``, and
``-update`` steps in between) is one collective; a collective is counted once where it
appears in the program text, also inside a loop body that runs several times (``outside_entry``
counts those not in the ENTRY computation, marked ``*`` in the table); a collective's
bytes are the larger of its operands and its result (every element of a tuple), i.e. the full
buffer: the reduced buffer of an all-reduce, the gathered result of an all-gather, the input of
a reduce-scatter. A method that fails to build or compile under a mode gets ``"error"`` there.

Models: ``mlp`` (default; the tiny two-modality problem of the trainer tests: widths 4, encoders
and head of width 8, 3 classes, Adam) and ``resnet`` (the ``crema_d`` protocol's audio and visual
ResNet-18s on small inputs). The step needs at least ``--devices`` devices; on fewer, the script
runs itself again on as many simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count``)::

    python -m benchmarks.bench_collectives [--model mlp|resnet] [--devices 8] [--methods vanilla synib]

Writes ``benchmarks/results/collectives[_resnet]_<device>.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import sys
import time
import traceback
from typing import NamedTuple

import jax
import numpy as np

from benchmarks._common import device_name, jax_environment
from benchmarks._common import machine_name
from jaxmm.data.types import Batch
from jaxmm.methods import available, get_method
from jaxmm.models.multimodal import ModelConfig
from jaxmm.tasks import Task
from jaxmm.train.config import OptimizerConfig
from jaxmm.train.protocols import protocol
from jaxmm.train.sharding import make_data_mesh, replicate, shard_batch
from jaxmm.train.trainer import Trainer, resolve_hparams

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
"""The collective opcodes counted (each also in its ``-start``/``-update``/``-done`` asynchronous form)."""
MODES = {"auto": {"parallel": "auto"}, "shard_map": {"parallel": "shard_map", "batch_norm": "sync"},
         "shard_map_local_bn": {"parallel": "shard_map", "batch_norm": "local"}}
"""Mode name -> the Trainer's ``parallel`` and ``batch_norm`` arguments."""
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
REPO = RESULTS_DIR.parent.parent
DEVICE_FLAG = "--xla_force_host_platform_device_count"

_BITS = {"pred": 8, "s4": 4, "u4": 4, "s8": 8, "u8": 8, "s16": 16, "u16": 16, "f16": 16, "bf16": 16, "s32": 32,
         "u32": 32, "f32": 32, "s64": 64, "u64": 64, "f64": 64, "c64": 64, "c128": 128, "token": 0, "opaque": 0}
_ARRAY = re.compile(r"\b([a-z]+[0-9a-z]*)\[([^\]]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_OPCODE = re.compile(r"\s*([a-z][\w\-]*)\(")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape: an array (``f32[2,3]{1,0}``) or a tuple of them (the sum); tokens count 0.

    Element types of fewer than 8 bits (``s4``, ``u4``) are packed; ``f8*`` types are 1 byte each.

    Raises:
      ValueError: an element type this table does not know (add its width to ``_BITS``).
    """
    total_bits = 0
    for dtype, dims in _ARRAY.findall(re.sub(r"/\*.*?\*/", "", shape)):
        bits = 8 if dtype.startswith("f8") else _BITS.get(dtype)
        if bits is None:
            raise ValueError(f"unknown HLO element type {dtype!r} in {shape!r}; add its width to _BITS")
        numel = math.prod(int(d.lstrip("<=")) for d in dims.split(",") if d.strip())
        total_bits += bits * numel
    return -(-total_bits // 8)


def _closing(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at ``text[start]`` (``(``, ``[`` or ``{``)."""
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] in "([{"
        depth -= text[i] in ")]}"
        if depth == 0:
            return i + 1
    return len(text)


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, last = [], 0, 0
    for i, c in enumerate(text):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    return [p for p in (*parts, text[last:]) if p.strip()]


class Instruction(NamedTuple):
    """One HLO instruction: its opcode, result shape, operand names and whether the ENTRY computation holds it."""

    opcode: str
    shape: str
    operands: list[str]
    in_entry: bool


def parse_instructions(hlo: str) -> dict[str, Instruction]:
    """Instruction name -> :class:`Instruction`, for every instruction in an HLO module's text."""
    out, in_entry = {}, False
    for line in hlo.splitlines():
        head = _INSTRUCTION.match(line)
        if not head:
            if line.rstrip().endswith("{"):  # a computation's header
                in_entry = line.lstrip().startswith("ENTRY")
            continue
        pos = head.end()
        end = _closing(line, pos) if line[pos:pos + 1] == "(" else line.find(" ", pos)
        opcode = _OPCODE.match(line, end) if end > pos else None
        if not opcode:
            continue
        args = line[opcode.end() - 1:_closing(line, opcode.end() - 1)][1:-1]
        operands = [a.split()[-1].lstrip("%") for a in _split_top(args)]
        out[head.group(1)] = Instruction(opcode.group(1), line[pos:end], operands, in_entry)
    return out


def count_collectives(hlo: str) -> dict:
    """Counts the collectives of an HLO module's text and the bytes they move (see the module docstring).

    Returns:
      ``{"counts": {kind: n}, "bytes": {kind: bytes}, "total_count": n, "total_bytes": bytes,
      "outside_entry": n}`` over :data:`KINDS` (every kind present, 0 when absent); ``outside_entry``
      counts those in other computations than ENTRY (loop bodies, branches, wrapped async computations),
      whose count per step the text does not say.
    """
    instructions = parse_instructions(hlo)

    def operand_bytes(names):
        return sum(shape_bytes(instructions[n].shape) for n in names if n in instructions)

    counts, nbytes, outside_entry = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0), 0
    for opcode, shape, operands, in_entry in instructions.values():
        kind = opcode.removesuffix("-done")
        if kind not in KINDS:
            continue
        if opcode.endswith("-done"):  # walk back through -update steps to the -start: its operands are the inputs
            while operands and operands[0] in instructions and not instructions[operands[0]].opcode.endswith("-start"):
                operands = instructions[operands[0]].operands
            operands = instructions[operands[0]].operands if operands and operands[0] in instructions else []
        counts[kind] += 1
        nbytes[kind] += max(shape_bytes(shape), operand_bytes(operands))
        outside_entry += not in_entry
    return {"counts": counts, "bytes": nbytes, "total_count": sum(counts.values()),
            "total_bytes": sum(nbytes.values()), "outside_entry": outside_entry}


def ensure_devices(n: int, argv: list[str]) -> None:
    """Runs this script again on ``n`` simulated CPU devices when jax sees fewer than ``n`` devices.

    Raises:
      ValueError: still fewer than ``n`` devices after the restart.
    """
    if jax.device_count() >= n:
        return
    if os.environ.get("JAXMM_BENCH_COLLECTIVES_RESTARTED"):
        raise ValueError(f"need {n} devices, jax sees {jax.device_count()} even with {DEVICE_FLAG}={n}; "
                         "pass a smaller --devices")
    flags = re.sub(rf"{DEVICE_FLAG}=\S+", "", os.environ.get("XLA_FLAGS", ""))
    env = {**os.environ, "XLA_FLAGS": f"{flags} {DEVICE_FLAG}={n}".strip(), "JAX_PLATFORMS": "cpu",
           "JAXMM_BENCH_COLLECTIVES_RESTARTED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    print(f"jax sees {jax.device_count()} device(s); restarting on {n} simulated CPU devices", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_collectives", *argv], env)


METHOD_OPTIONS = {"mlp": {"unimodal": {"modality": "a"}}, "resnet": {"unimodal": {"modality": "audio"}}}
"""Model -> options a method cannot be built without on that model's problem."""


def problem(model: str, batch: int):
    """(model config, modality -> example shape, number of classes, optimiser, host batch ``[1, B, ...]``)."""
    rng = np.random.default_rng(0)
    if model == "mlp":
        cfg, classes = ModelConfig(encoder_hidden=(8,), fusion_hidden=(8,)), 3
        opt = OptimizerConfig("adam", 1e-2, 0.0)
        inputs = {m: rng.standard_normal((1, batch, 4), dtype=np.float32) for m in ("a", "b")}
    else:
        p = protocol("crema_d")
        cfg, classes, opt = p.model, 6, p.optimizer
        inputs = {"audio": rng.standard_normal((1, batch, 16, 12, 1), dtype=np.float32),
                  "visual": rng.integers(0, 256, (1, batch, 1, 16, 16, 3), dtype=np.uint8)}
    host = Batch(inputs=inputs, label=rng.integers(0, classes, (1, batch)),
                 index=np.arange(batch, dtype=np.int32)[None], meta={"valid": np.ones((1, batch), np.float32)})
    return cfg, {m: x.shape[2:] for m, x in inputs.items()}, classes, opt, host


def lower_step(name: str, mode: str, model: str, batch: int, devices: int) -> jax.stages.Lowered:
    """``name``'s jitted train step (one run of ``problem(model, batch)``) lowered under ``mode`` on ``devices``."""
    cfg, shapes, classes, opt, host = problem(model, batch)
    method = get_method(name, **METHOD_OPTIONS[model].get(name, {}))
    trainer = Trainer(method, shapes, Task(num_classes=classes), cfg, opt, mesh=make_data_mesh(devices),
                      steps_per_epoch=10, **MODES[mode])
    hparams = resolve_hparams(method, opt, [{}])
    state = trainer.init([0], hparams, jax.tree.map(lambda x: x[0], host))
    return trainer._step.lower(state, shard_batch(host, trainer.mesh), replicate(hparams, trainer.mesh))


def measure(name: str, mode: str, args: argparse.Namespace) -> dict:
    """Compiles ``name``'s train step under ``mode`` and counts its collectives; ``{"error": ...}`` if that fails."""
    start = time.perf_counter()
    try:
        compiled = lower_step(name, mode, args.model, args.batch, args.devices).compile()
        return {**count_collectives(compiled.as_text()), "seconds": round(time.perf_counter() - start, 2)}
    except Exception as e:  # noqa: BLE001 - a method that does not compile must not stop the table
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:400],
                "traceback_tail": traceback.format_exc().splitlines()[-6:]}


def _cell(r: dict) -> str:
    if "error" in r:
        return "error"
    return f"{r['total_count']}{'*' if r['outside_entry'] else ''} / {r['total_bytes']:,}"


def markdown(results: dict[str, dict[str, dict]], modes: list[str]) -> list[str]:
    """Table rows: method, then ``count / bytes`` under each mode and the kinds present (``kind xN``)."""
    rows = ["| method | " + " | ".join(f"{m}: count / bytes" for m in modes) + " | kinds |",
            "|---|" + "---|" * len(modes) + "---|"]
    for name, per_mode in results.items():
        kinds = "; ".join(f"{m}: " + (", ".join(f"{k} x{n}" for k, n in r["counts"].items() if n) or "none")
                          for m, r in per_mode.items() if "error" not in r)
        rows.append(f"| {name} | " + " | ".join(_cell(per_mode[m]) if m in per_mode else "-" for m in modes)
                    + f" | {kinds} |")
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "resnet"), default="mlp")
    parser.add_argument("--devices", type=int, default=8, help="devices of the data mesh (simulated on a CPU)")
    parser.add_argument("--batch", type=int, default=16, help="global batch (a multiple of --devices)")
    parser.add_argument("--methods", nargs="+", help="methods to compile (default: every registered one)")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES),
                        help="default: auto and shard_map, and shard_map_local_bn for --model resnet (BatchNorm)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="JSON path (default: results/collectives[_resnet]_<device>.json)")
    parser.add_argument("--merge", action="store_true", help="keep the other methods' records already in --out")
    args = parser.parse_args(argv)
    if args.batch % args.devices:
        parser.error(f"--batch {args.batch} is not a multiple of --devices {args.devices}")
    args.modes = args.modes or ["auto", "shard_map"] + (["shard_map_local_bn"] if args.model == "resnet" else [])
    return args


def main(argv=None) -> None:
    """Compiles every method under every mode, writes the JSON and prints the table."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    ensure_devices(args.devices, argv)

    names = args.methods or list(available())
    out = args.out or RESULTS_DIR / f"collectives{'_resnet' if args.model == 'resnet' else ''}_{device_name()}.json"
    results = {}
    for name in names:
        results[name] = {mode: measure(name, mode, args) for mode in args.modes}
        print(f"{name}: " + ", ".join(f"{m} {_cell(r)}" + (f" ({r['error'][:100]})" if "error" in r else "")
                                      for m, r in results[name].items()), flush=True)
    if args.merge and out.exists():
        results = {**json.loads(out.read_text())["results"], **results}
    rows = markdown(results, args.modes)
    report = {"benchmark": "collectives", "machine": machine_name(), "devices": args.devices,
              "config": vars(args) | {"out": str(out), "methods": names}, "environment": jax_environment(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results, "markdown": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{machine_name()}, {args.devices} devices\n" + "\n".join(rows) + f"\nwrote {out}")


if __name__ == "__main__":
    main()
