"""Named training protocols: the model, optimiser and loop of a published setup.

The GeWu-Lab audio-visual protocol (the setup shared by the official OGM-GE, PMR, AGM and
InfoReg codes): two ResNet-18s trained from scratch (audio spectrogram, visual frames),
concatenation fusion with one
Linear head and Linear unimodal heads (official ``weight_init``: Xavier-normal
Linear, Kaiming convs, BatchNorm 1/0), SGD with momentum 0.9 and weight decay
1e-4, batch 64, and the learning rate, ``StepLR`` schedule and epoch count of
the repository named by the protocol:

=================  ======  ==================  ======  ======  =============
protocol           lr      schedule            epochs  frames  BN scale init
=================  ======  ==================  ======  ======  =============
crema_d            1e-3    StepLR(70, x0.1)    100     1       1 (OGM-GE, PMR, MLA)
crema_d_inforeg    2e-3    StepLR(30, x0.1)    50      3       1 (InfoReg, RedReg)
crema_d_mmpareto   2e-3    constant            50      2       N(1, 0.02)
crema_d_dnr        2e-3    constant            90      2       N(1, 0.02)
kinetics_sounds    1e-3    StepLR(70, x0.1)    100     3       1 (OGM-GE settings)
=================  ======  ==================  ======  ======  =============

MMPareto creates a ``StepLR(30)`` but never steps it, so its rate is constant.
The frame count is a dataset option (``num_frames``), applied by
:func:`apply_protocol`. Everything stays overridable with ``--set`` after the
protocol, e.g. ``--protocol crema_d --set model.dtype=bfloat16``. The loop
reports the last (or validation-best) epoch, not the repositories' best test
epoch. Training batches get the official per-frame RandomResizedCrop and
horizontal flip on the host (``train.augment_frames``); frames are
ImageNet-normalised on the device.
"""
from __future__ import annotations

import dataclasses

from jaxmm.models.multimodal import ModelConfig
from jaxmm.train.config import OptimizerConfig, RunConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Configuration of a named protocol.

    Attributes:
      model: the model.
      optimizer: optimiser and schedule.
      train: the epoch loop.
      dataset_options: options the protocol sets on the dataset (e.g. ``num_frames``).
    """

    model: ModelConfig
    optimizer: OptimizerConfig
    train: TrainConfig
    dataset_options: dict


# name -> (lr, StepLR step size or None, epochs, frames, BN scale init std)
_GEWU = {
    "crema_d": (1e-3, 70, 100, 1, 0.0),
    "crema_d_inforeg": (2e-3, 30, 50, 3, 0.0),
    "crema_d_mmpareto": (2e-3, None, 50, 2, 0.02),
    "crema_d_dnr": (2e-3, None, 90, 2, 0.02),
    "kinetics_sounds": (1e-3, 70, 100, 3, 0.0),
}
PROTOCOLS = tuple(_GEWU)
"""The protocol names :func:`protocol` accepts."""


def protocol(name: str) -> Protocol:
    """The configuration of a named protocol (see the module docstring).

    Raises:
      ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in _GEWU:
        raise ValueError(f"unknown protocol {name!r}; choose one of {PROTOCOLS}")
    lr, step_size, epochs, frames, bn_scale_std = _GEWU[name]
    model = ModelConfig(encoders={"audio": "audio", "visual": "visual"}, fusion="concat", fusion_hidden=(),
                        unimodal_hidden=(), init="xavier", bn_scale_std=bn_scale_std)
    schedule = {"schedule": "constant"} if step_size is None else {"schedule": "step", "step_size": step_size}
    optimizer = OptimizerConfig(name="sgd", lr=lr, weight_decay=1e-4, momentum=0.9, gamma=0.1, **schedule)
    train = TrainConfig(epochs=epochs, batch_size=64, eval_batch_size=64, augment_frames=("visual",))
    return Protocol(model, optimizer, train, {"num_frames": frames})


def apply_protocol(cfg: RunConfig, name: str) -> RunConfig:
    """Sets ``cfg``'s model, optimiser and loop to protocol ``name`` and adds its dataset options.

    Dataset options already in ``cfg`` are kept (the protocol only fills missing ones).
    """
    p = protocol(name)
    cfg.model, cfg.optimizer, cfg.train = p.model, p.optimizer, p.train
    cfg.dataset_options = {**p.dataset_options, **cfg.dataset_options}
    return cfg
