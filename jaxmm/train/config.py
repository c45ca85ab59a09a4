"""Run configuration as dataclasses, with ``--set a.b=value`` style overrides."""
from __future__ import annotations

import ast
import dataclasses
from typing import Any

from jaxmm.models.multimodal import ModelConfig


SCHEDULES = ("constant", "step")


@dataclasses.dataclass
class OptimizerConfig:
    """Optimiser of the model parameters and its learning-rate schedule.

    Attributes:
      name: ``adam`` (PyTorch semantics: weight decay added to the gradient, L2),
        ``adamw`` (decoupled decay) or ``sgd`` (momentum, PyTorch-style L2 decay).
      lr: base learning rate (per-run overridable through ``hparams['lr']``).
      weight_decay: weight decay (per-run overridable through ``hparams['weight_decay']``).
      momentum: SGD momentum.
      schedule: ``constant``, or ``step``: PyTorch ``StepLR`` stepped once per
        epoch, the learning rate of epoch ``e`` (0-based) is
        ``lr * gamma ** (e // step_size)``.
      step_size: epochs between two decays of the ``step`` schedule.
      gamma: decay factor of the ``step`` schedule.
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    step_size: int = 70
    gamma: float = 0.1

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise ValueError(f"optimizer.step_size must be a positive number of epochs, got {self.step_size!r}")
        if not self.gamma > 0:
            raise ValueError(f"optimizer.gamma must be positive, got {self.gamma!r}")


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
      progress: show a tqdm progress bar.
      augment_frames: modalities whose ``uint8 [..., H, W, 3]`` frames get a
        per-frame RandomResizedCrop + horizontal flip in every training batch
        (the GeWu-Lab train transform; evaluation sees the frames unchanged).
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

    def __post_init__(self):
        if self.select not in ("last", "best"):
            raise ValueError(f"train.select must be 'last' or 'best', got {self.select!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be positive")
        if isinstance(self.augment_frames, str):
            raise ValueError(f"train.augment_frames is a list of modality names, e.g. ['visual'], "
                             f"got {self.augment_frames!r}")
        self.augment_frames = tuple(self.augment_frames)


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
    """

    name: str = "run"
    method: str = "vanilla"
    method_options: dict = dataclasses.field(default_factory=dict)
    dataset: str = "spurious_xor"
    dataset_options: dict = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    hparams: dict = dataclasses.field(default_factory=dict)
    loss: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    out_dir: str = "runs"


def parse_value(text: str) -> Any:
    """A Python literal if ``text`` is one (``1e-3``, ``(16,)``, ``True``), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, overrides: list[str]):
    """Applies ``["optimizer.lr=1e-3", "method_options.mask=learned", ...]`` in place.

    Dict fields (``method_options``, ``dataset_options``, ``hparams``) accept new
    keys; dataclass fields must exist.

    Raises:
      ValueError: malformed override or unknown field, naming the valid fields.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        path, text = item.split("=", 1)
        *parents, leaf = path.strip().split(".")
        target = config
        for part in parents:
            target = _child(target, part, path)
        value = parse_value(text)
        if isinstance(target, dict):
            target[leaf] = value
        elif dataclasses.is_dataclass(target) and leaf in {f.name for f in dataclasses.fields(target)}:
            current = getattr(target, leaf)
            if isinstance(current, float) and isinstance(value, int):
                value = float(value)
            setattr(target, leaf, value)
            if hasattr(target, "__post_init__"):
                target.__post_init__()
        else:
            raise ValueError(f"unknown field {leaf!r} in override {item!r}; valid: {_names(target)}")
    return config


def _child(target, part, path):
    if isinstance(target, dict):
        return target.setdefault(part, {})
    if dataclasses.is_dataclass(target) and part in {f.name for f in dataclasses.fields(target)}:
        return getattr(target, part)
    raise ValueError(f"unknown field {part!r} in override {path!r}; valid: {_names(target)}")


def _names(target):
    return sorted(target) if isinstance(target, dict) else [f.name for f in dataclasses.fields(target)]
