"""Run configuration as dataclasses, with ``--set a.b=value`` style overrides."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import math
import os
import typing
from typing import Any, Mapping, Sequence

import dacite
import yaml

from jaxmm._checks import check_choice
from jaxmm.models.multimodal import ModelConfig


SCHEDULES = ("constant", "step", "cosine", "cosine_restarts", "plateau")
PRETRAIN = ("finetune", "freeze")
ON_DIVERGENCE = ("stop", "warn", "ignore")


@dataclasses.dataclass
class OptimizerConfig:
    """Optimiser of the model parameters and its learning-rate schedule.

    Attributes:
      name: ``adam`` (PyTorch semantics: weight decay added to the gradient, L2),
        ``adamw`` (decoupled decay) or ``sgd`` (momentum, PyTorch-style L2 decay).
      lr: base learning rate (per-run overridable through ``hparams['lr']``).
      weight_decay: weight decay (per-run overridable through ``hparams['weight_decay']``).
      momentum: SGD momentum.
      schedule: ``constant``; ``step``: PyTorch ``StepLR`` stepped once per
        epoch, the learning rate of epoch ``e`` (0-based) is
        ``lr * gamma ** (e // step_size)``; ``cosine``: linear warm-up from 0 over
        ``warmup_steps`` optimiser steps, then cosine decay to 0 at ``total_steps``
        (``optax.warmup_cosine_decay_schedule``); ``cosine_restarts``: SynIB's
        ``cosanneal`` (its ``WarmupScheduler``): the base rate for ``warmup_steps``
        steps, then PyTorch ``CosineAnnealingWarmRestarts(T_0=restart_steps,
        T_mult=restart_mult, eta_min=0)`` evaluated at the global step count;
        ``plateau``: PyTorch ``ReduceLROnPlateau`` (mode ``min``, relative threshold,
        no cooldown) on the validation loss, stepped once per epoch
        (:mod:`jaxmm.train.optim`).
      step_size: epochs between two decays of the ``step`` schedule.
      gamma: decay factor of the ``step`` schedule.
      warmup_steps: optimiser steps of the warm-up of ``cosine`` / ``cosine_restarts``.
      total_steps: optimiser steps of the whole ``cosine`` schedule (warm-up included);
        0: ``train.epochs`` x batches per epoch (filled in by the loop).
      restart_steps: ``cosine_restarts``: steps of the first cosine cycle (``T_0``).
      restart_mult: ``cosine_restarts``: growth factor of each next cycle (``T_mult``).
      plateau_factor: ``plateau``: the rate is multiplied by this on a plateau.
      plateau_patience: ``plateau``: epochs without improvement tolerated before a decay.
      plateau_threshold: ``plateau``: relative improvement that counts (``rel`` mode).
      clip_norm: clip the gradient to this global norm before the optimiser (PyTorch
        ``clip_grad_norm_``); 0: no clipping.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    step_size: int = 70
    gamma: float = 0.1
    warmup_steps: int = 0
    total_steps: int = 0
    restart_steps: int = 4
    restart_mult: int = 2
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    plateau_threshold: float = 1e-4
    clip_norm: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"optimizer.lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"optimizer.weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise ValueError(f"optimizer.step_size must be a positive number of epochs, got {self.step_size!r}")
        if not self.gamma > 0:
            raise ValueError(f"optimizer.gamma must be positive, got {self.gamma!r}")
        for name in ("warmup_steps", "total_steps", "plateau_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"optimizer.{name} must be a non-negative integer, got {value!r}")
        if self.schedule == "cosine" and self.total_steps and self.warmup_steps >= self.total_steps:
            raise ValueError(f"optimizer.warmup_steps={self.warmup_steps} must be below optimizer.total_steps="
                             f"{self.total_steps} (the cosine decay needs steps after the warm-up)")
        if not isinstance(self.restart_steps, int) or self.restart_steps < 1:
            raise ValueError(f"optimizer.restart_steps must be a positive integer, got {self.restart_steps!r}")
        if not isinstance(self.restart_mult, int) or self.restart_mult < 1:
            raise ValueError(f"optimizer.restart_mult must be a positive integer, got {self.restart_mult!r}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"optimizer.plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if not 0 <= self.plateau_threshold < 1:
            raise ValueError(f"optimizer.plateau_threshold must be in [0, 1), got {self.plateau_threshold!r}")
        if not (self.clip_norm >= 0 and math.isfinite(self.clip_norm)):
            raise ValueError(f"optimizer.clip_norm must be a non-negative number (0: no clipping), "
                             f"got {self.clip_norm!r}")


@dataclasses.dataclass
class TrainConfig:
    """The epoch loop.

    Attributes:
      epochs: maximum number of epochs.
      batch_size: training batch size (the last partial batch is padded and masked).
      eval_batch_size: chunk size of evaluation passes.
      select: ``last`` (report the final epoch) or ``best`` (the epoch with the best
        validation ``select_metric``, per run).
      select_metric: validation metric for ``best`` and early stopping, e.g. ``acc``,
        ``acc/source/syn`` or ``mae`` (error metrics are minimised); empty: the task's
        default (``acc`` for classification, ``mae`` for regression).
      patience: stop once no run improved for this many epochs (0: never stop early).
      eval_train: also evaluate the training split every epoch (per-source dynamics).
      checkpoint_every: save a checkpoint every this many epochs (0: never).
      progress: show progress: a tqdm bar on a terminal, one line per epoch when standard
        output is not one (CI logs, files).
      augment_frames: modalities whose ``uint8 [..., H, W, 3]`` frames get a
        per-frame RandomResizedCrop + horizontal flip in every training batch
        (the GeWu-Lab train transform; evaluation sees the frames unchanged).
      on_divergence: when a run's training loss becomes NaN/inf or rises more than
        ``divergence_factor`` times above its start or best (:mod:`jaxmm.train.divergence`):
        ``stop`` (an error naming the epoch and the runs), ``warn`` or ``ignore``.
      divergence_factor: how far the loss must rise to count as diverged (> 1).
      tensorboard: write TensorBoard event files of every epoch record under
        ``<run>/tensorboard/`` (:mod:`jaxmm.train.loggers`; needs a run folder).
      figures: draw the run's figures into its folder at the end (``curves.png``,
        ``modalities.png``, ``method_logs.png``: :mod:`jaxmm.train.diagnostics`); off:
        ``metrics.jsonl`` and ``results.json`` only (an experiment that draws its own).
      wandb_project: log every epoch record to this Weights & Biases project (empty: no W&B;
        needs ``pip install wandb``).
      unimodal_reference: modality -> the accuracy that modality reaches trained alone, e.g.
        ``{'audio': 0.62, 'visual': 0.55}`` from the ``test_summary.acc.mean`` of a
        ``--method unimodal --set method_options.modality=audio`` run's ``results.json``.
        Given, ``modalities.png`` adds each modality's utilisation (its validation accuracy /
        reference) and gap (reference − accuracy) over epochs (classification only).
      pretrain_epochs: first train each modality's encoder alone (the ``unimodal`` method,
        same model, optimiser and seeds) for this many epochs, into ``<run>/pretrain/<m>/``,
        and start the fused model's encoders from them (:mod:`jaxmm.train.pretrain`); 0: no
        pre-training.
      pretrain: what the fused run does with the pre-trained encoders: ``finetune`` (train
        them on) or ``freeze`` (they stay bit-identical).
      parallel: how the step uses the device mesh: ``auto`` (one program the compiler
        partitions) or ``shard_map`` (written per device: one gradient reduction, global
        masked means; :func:`~jaxmm.train.trainer.per_device_step`).
      batch_norm: under ``shard_map``: ``sync`` (BatchNorm moments over all devices, the same
        model as ``auto``) or ``local`` (per device, as PyTorch DDP without SyncBatchNorm).
    """

    epochs: int = 100
    batch_size: int = 128
    eval_batch_size: int = 4096
    select: str = "last"
    select_metric: str = ""
    patience: int = 0
    eval_train: bool = False
    checkpoint_every: int = 1
    progress: bool = True
    augment_frames: tuple[str, ...] = ()
    on_divergence: str = "stop"
    divergence_factor: float = 100.0
    tensorboard: bool = True
    figures: bool = True
    wandb_project: str = ""
    unimodal_reference: dict[str, float] = dataclasses.field(default_factory=dict)
    pretrain_epochs: int = 0
    pretrain: str = "finetune"
    parallel: str = "auto"
    batch_norm: str = "sync"

    def __post_init__(self):
        bad = {m: a for m, a in self.unimodal_reference.items()
               if not (isinstance(a, (int, float)) and 0 < a <= 1)}
        if bad:
            raise ValueError(f"train.unimodal_reference: give each modality's accuracy trained alone, in (0, 1]; "
                             f"got {bad}")
        if self.on_divergence not in ON_DIVERGENCE:
            raise ValueError(f"train.on_divergence must be one of {ON_DIVERGENCE}, got {self.on_divergence!r}")
        if not self.divergence_factor > 1:
            raise ValueError(f"train.divergence_factor must be > 1, got {self.divergence_factor!r}")
        if self.select not in ("last", "best"):
            raise ValueError(f"train.select must be 'last' or 'best', got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be positive")
        if isinstance(self.augment_frames, str):
            raise ValueError(f"train.augment_frames is a list of modality names, e.g. ['visual'], "
                             f"got {self.augment_frames!r}")
        self.augment_frames = tuple(self.augment_frames)
        if not isinstance(self.pretrain_epochs, int) or isinstance(self.pretrain_epochs, bool) \
                or self.pretrain_epochs < 0:
            raise ValueError(f"train.pretrain_epochs must be a non-negative integer (0: no pre-training), "
                             f"got {self.pretrain_epochs!r}")
        if self.pretrain not in PRETRAIN:
            raise ValueError(f"train.pretrain must be one of {PRETRAIN}, got {self.pretrain!r}")
        check_choice("train.parallel", self.parallel, ("auto", "shard_map"))
        check_choice("train.batch_norm", self.batch_norm, ("sync", "local"))
        if not isinstance(self.figures, bool):
            raise ValueError(f"train.figures must be true or false, got {self.figures!r}")


@dataclasses.dataclass
class RunConfig:
    """Everything ``jaxmm train`` needs; written to ``runs/<name>/config.json``.

    Attributes:
      name: run name (output folder ``<out_dir>/<name>``).
      method: registered method name; ``method_options`` its static options.
      dataset: registered dataset name; ``dataset_options`` its arguments.
      seeds: one run per seed, vmapped together.
      hparams: overrides of the method's vmappable hyper-parameters (same for every seed).
      loss: the task's loss (``auto``, ``softmax``, ``sigmoid``; regression ``l1``, ``mse``);
        empty: the default of the dataset's task.
      sweep: dotted field -> values; the runs are their cartesian product with the seeds
        (:mod:`jaxmm.train.sweep`: vmappable fields share one program).
      modalities: train on these modalities of the dataset only, in this order (empty: all).
    """

    name: str = "run"
    method: str = "vanilla"
    method_options: dict = dataclasses.field(default_factory=dict)
    dataset: str = "spurious_xor"
    dataset_options: dict = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    hparams: dict[str, float] = dataclasses.field(default_factory=dict)
    loss: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    out_dir: str = "runs"
    sweep: dict[str, list] = dataclasses.field(default_factory=dict)
    modalities: tuple[str, ...] = ()

    def __post_init__(self):
        seeds = tuple(self.seeds)
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ValueError(f"seeds must be non-negative integers, e.g. 0,1,2; got {self.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {list(seeds)} repeat a seed; each seed is one run, give each once")
        self.seeds = seeds
        if isinstance(self.modalities, str) or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities is a list of distinct modality names, e.g. ['vision', 'text'], "
                             f"got {self.modalities!r}")
        self.modalities = tuple(self.modalities)
        if not self.name or os.sep in self.name or self.name in (".", ".."):
            raise ValueError(f"name {self.name!r} must be a plain folder name (no '{os.sep}')")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)`` (a :class:`RunConfig` checks the range and repeats).

    Raises:
      ValueError: not comma-separated integers.
    """
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give comma-separated non-negative integers, e.g. 0,1,2") from None


def parse_value(text: str) -> Any:
    """A Python literal if ``text`` is one (``1e-3``, ``(16,)``, ``True``), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _to_float(value):
    """Ints (not bools) become floats for ``float`` fields; everything else is left to the type check."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def from_dict(cls, data: Mapping[str, Any], what: str = "config"):
    """A config dataclass ``cls`` from nested ``data``, every value checked against its field's type.

    Parsing and checking is ``dacite``'s (a small, well-kept library that maps dicts onto typed
    dataclasses and names the dotted field in its errors); ints are accepted for float fields and
    lists for tuple fields. Each dataclass's ``__post_init__`` then checks ranges and choices.

    Raises:
      ValueError: one line naming the field, the expected type and the value given (``what`` says
        where the value came from).
    """
    try:
        return dacite.from_dict(cls, dict(data), config=dacite.Config(
            strict=True, cast=[tuple], type_hooks={float: _to_float}))
    except dacite.UnexpectedDataError as e:
        raise ValueError(f"{what}: unknown field(s) {sorted(e.keys)}") from None
    except dacite.DaciteError as e:
        raise ValueError(f"{what}: {e}") from None


def to_dict(config) -> dict:
    """``config`` (a dataclass) as nested plain data (tuples kept)."""
    return dataclasses.asdict(config)


def _set_path(data: dict, cls, path: str, value, what: str) -> None:
    """Sets dotted ``path`` in ``data`` (the dict of a ``cls`` config); only dict fields accept new keys."""
    *parents, leaf = path.split(".")
    target, kind = data, cls
    for part in parents + [leaf]:
        if kind is not None:  # inside a dataclass: the field must exist
            hints = typing.get_type_hints(kind)
            if part not in hints:
                raise ValueError(f"{what}: unknown field {part!r} in {path!r}; valid: {sorted(hints)}")
        if part is leaf:
            break
        if kind is not None:
            field_type = hints[part]
            if not (dataclasses.is_dataclass(field_type) or field_type is dict or typing.get_origin(field_type) is dict):
                raise ValueError(f"{what}: {path!r} goes below {part!r}, which is a single value")
            kind = field_type if dataclasses.is_dataclass(field_type) else None
        target = target.setdefault(part, {})
    target[leaf] = value


def apply_overrides(config, overrides: Sequence[str]):
    """Applies ``["optimizer.lr=1e-3", "method_options.mask=learned", ...]`` to ``config`` (in place).

    Values are Python literals (``1e-3``, ``(16, 8)``, ``True``; anything else is a string), checked
    against the field's type before anything runs: ``optimizer.lr=abc`` and ``train.epochs=2.5`` are
    refused naming the field. Dict fields (``method_options``, ``dataset_options``, ``hparams``)
    accept new keys; dataclass fields must exist.

    Raises:
      ValueError: a malformed override, an unknown field (naming the valid ones) or a wrong type.
    """
    data = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not of the form key.path=value, e.g. optimizer.lr=3e-4")
        path, text = item.split("=", 1)
        _set_path(data, type(config), path.strip(), parse_value(text), f"--set {item}")
    new = from_dict(type(config), data, "--set")
    for f in dataclasses.fields(config):
        setattr(config, f.name, getattr(new, f.name))
    return config


def load_config_file(path: str) -> dict:
    """The config in ``path`` as nested data: a Python file whose ``get_config()`` returns a
    :class:`RunConfig` or a dict, or a YAML / JSON file holding a mapping.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an unknown file type, a file that does not parse, or no ``get_config``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".py":
        spec = importlib.util.spec_from_file_location("jaxmm_user_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "get_config", None)):
            raise ValueError(f"--config {path}: a Python config defines get_config() returning a RunConfig or a dict")
        data = module.get_config()
        data = to_dict(data) if dataclasses.is_dataclass(data) else data
    elif ext in (".yaml", ".yml", ".json"):
        with open(path) as f:
            try:
                data = json.load(f) if ext == ".json" else yaml.safe_load(f)
            except (json.JSONDecodeError, yaml.YAMLError) as e:
                raise ValueError(f"--config {path}: does not parse: {str(e).splitlines()[0]}") from None
    else:
        raise ValueError(f"--config {path}: unknown file type {ext!r}; use .py (get_config()), .yaml, .yml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: holds {type(data).__name__}, not a mapping of config fields")
    return data


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict:
    """``base`` with ``update`` merged in, recursively for nested mappings."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def differences(old, new, prefix: str = "") -> list[str]:
    """``["optimizer.lr: 0.001 -> 0.01", ...]``: the dotted fields where two configs (or dicts) differ."""
    a = to_dict(old) if dataclasses.is_dataclass(old) else old
    b = to_dict(new) if dataclasses.is_dataclass(new) else new
    out = []
    for k in sorted(set(a) | set(b), key=str):
        x, y = a.get(k, "<unset>"), b.get(k, "<unset>")
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += differences(x, y, f"{prefix}{k}.")
        elif _normalise(x) != _normalise(y):
            out.append(f"{prefix}{k}: {x!r} -> {y!r}")
    return out


def _normalise(value):
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value
