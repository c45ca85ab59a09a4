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
horizontal flip on the device (``train.augment_frames``); frames are
ImageNet-normalised on the device.

The MultiBench affect protocols (dataset ``multibench``, the MulT ``*_data.pkl`` files of
MOSI/MOSEI, MultiBench's ``sarcasm.pkl``/``humor.pkl``; sequences of T = 50 steps, left
zero-padded, which every sequence encoder masks):

* ``mosi_btw``, ``mosei_btw``: sentiment regression (L1) on vision, audio and text. BTW's
  model: LSTM encoders (hidden 16, out 64) for vision and audio, a Transformer over the GloVe
  text features, projection 128, MoE fusion (16 experts, top-2), SubNet 128. Adam 1e-4, weight
  decay 1e-4, batch 32, 40 epochs, ReduceLROnPlateau(0.5, patience 20) on the validation loss,
  gradient clipping 0.8, early stopping after 7 epochs (validation MAE, best epoch kept).
* ``mosi_synib``, ``mustard_synib``, ``urfunny_synib``: 2 classes, vision and text. FactorCL_Uni
  encoders (hidden 40), pre-trained unimodally (100 epochs), concat -> 64 -> head, dropout 0.1.
  Adam 1e-4, weight decay 1e-4, batch 32, SynIB's ``cosanneal`` (warm-up 780), 100 epochs,
  early stopping after 30 (validation accuracy, best epoch kept).
* ``mosei_dmil``: 2 classes, vision and text. Transformer encoders (d 64, 2 layers), concat ->
  64 -> head. Adam 1e-4, weight decay 1e-4, batch 32, 30 epochs (DMIL stages 10 / 10 / 10),
  early stopping after 10.

BTW's text encoder is BERT's ``[CLS]`` (768-d) in the official code; no pretrained weights can be
downloaded here, so the text modality is the pickle's GloVe features under a Transformer encoder
(a user's own feature files work the same way). SynIB's ``cosanneal`` is its code's schedule,
not a linear warm-up: the base rate for 780 steps, then cosine annealing with warm restarts
(``T_0 = 4`` steps, ``T_mult = 2``) over the global step count (``optimizer.schedule=
cosine_restarts``). The SynIB flags of its ``REPRODUCE.md`` (the paper's Table 2 runs)
apply only to ``--method synib`` with that mask (``method_options.mask``, default ``random``):
MOSI also uses SynIB-U (``reference=unimodal``). DMIL has no code; its MOSEI settings are ours:
the backbone's usual Adam and a third of the epochs per stage (the paper gives no values).
A protocol fills in only the method options and hyper-parameters the command line did not give;
the dataset options, ``modalities`` and everything else stay overridable with ``--set``.
"""
from __future__ import annotations

import dataclasses

from jaxmm.methods.registry import options_of
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
      dataset: the registered dataset it trains on (empty: the one given).
      modalities: the modalities it trains on (empty: all of the dataset's).
      methods: ``(method, mask or None)`` -> :class:`MethodSettings` for that method (and mask
        variant), e.g. SynIB's per-dataset flags.
    """

    model: ModelConfig
    optimizer: OptimizerConfig
    train: TrainConfig
    dataset_options: dict
    dataset: str = ""
    modalities: tuple[str, ...] = ()
    methods: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """What a protocol sets for one method: options, hyper-parameters and optimiser fields.

    Attributes:
      options: method options (filled in where the config has none).
      hparams: hyper-parameters (filled in where the config has none).
      optimizer: :class:`OptimizerConfig` fields (e.g. SynIB-random's own ``lr``).
    """

    options: dict = dataclasses.field(default_factory=dict)
    hparams: dict = dataclasses.field(default_factory=dict)
    optimizer: dict = dataclasses.field(default_factory=dict)


# name -> (lr, StepLR step size or None, epochs, frames, BN scale init std)
_GEWU = {
    "crema_d": (1e-3, 70, 100, 1, 0.0),
    "crema_d_inforeg": (2e-3, 30, 50, 3, 0.0),
    "crema_d_mmpareto": (2e-3, None, 50, 2, 0.02),
    "crema_d_dnr": (2e-3, None, 90, 2, 0.02),
    "kinetics_sounds": (1e-3, 70, 100, 3, 0.0),
}
# SynIB's MultiBench flags (its REPRODUCE.md): dataset -> (file variant, (λ, p, lr, wd) of the random mask,
# (λ, λ_sp) of the learned mask, method options)
_SYNIB = {
    "mosi": ("mult", (0.1, 0.3, 5e-4, 1e-3), (100.0, 0.1), {"reference": "unimodal"}),
    "mustard": ("raw", (0.001, 0.1, 5e-4, 1e-3), (1.0, 10.0), {}),
    "urfunny": ("raw", (0.001, 0.7, 1e-3, 1e-3), (1.0, 0.01), {}),
}
_BTW = ("mosi", "mosei")
PROTOCOLS = (*_GEWU, *(f"{d}_btw" for d in _BTW), *(f"{d}_synib" for d in _SYNIB), "mosei_dmil")
"""The protocol names :func:`protocol` accepts."""


def protocol(name: str) -> Protocol:
    """The configuration of a named protocol (see the module docstring).

    Raises:
      ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {PROTOCOLS}")
    if name.endswith("_btw"):
        return _btw(name[:-len("_btw")])
    if name.endswith("_synib"):
        return _synib(name[:-len("_synib")])
    if name == "mosei_dmil":
        return _dmil()
    lr, step_size, epochs, frames, bn_scale_std = _GEWU[name]
    model = ModelConfig(encoders={"audio": "audio", "visual": "visual"}, fusion="concat", fusion_hidden=(),
                        unimodal_hidden=(), init="xavier", bn_scale_std=bn_scale_std)
    schedule = {"schedule": "constant"} if step_size is None else {"schedule": "step", "step_size": step_size}
    optimizer = OptimizerConfig(name="sgd", lr=lr, weight_decay=1e-4, momentum=0.9, gamma=0.1, **schedule)
    train = TrainConfig(epochs=epochs, batch_size=64, eval_batch_size=64, augment_frames=("visual",))
    return Protocol(model, optimizer, train, {"num_frames": frames})


def _sequences(**encoders) -> dict:
    """``ModelConfig`` fields of sequence encoders: ``encoders`` = modality -> (kind, options)."""
    return {"encoders": {m: kind for m, (kind, _) in encoders.items()},
            "encoder_options": {m: {**options, "padding": "left"} for m, (_, options) in encoders.items()}}


def _btw(dataset: str) -> Protocol:
    """BTW on MOSI/MOSEI (its code's ``config.py`` and README): LSTM audio/vision, projection 128, MoE cross encoder."""
    lstm = ("lstm", {"hidden": 16, "features": 64})
    model = ModelConfig(**_sequences(vision=lstm, audio=lstm,
                                     text=("transformer", {"d_model": 64, "heads": 4, "layers": 2})),
                        projection=128, fusion="moe", fusion_hidden=(128,), unimodal_hidden=(),
                        fusion_options={"num_layers": 2, "num_experts": 16, "top_k": 2})
    optimizer = OptimizerConfig(name="adam", lr=1e-4, weight_decay=1e-4, schedule="plateau", plateau_factor=0.5,
                                plateau_patience=20, clip_norm=0.8)
    train = TrainConfig(epochs=40, batch_size=32, eval_batch_size=256, select="best", patience=7)
    # the MoE cross encoder normalises what it fuses (no extra LayerNorm); weights refreshed every 5 epochs
    methods = {("btw", None): MethodSettings({"normalize": False, "refresh_every": 5})}
    return Protocol(model, optimizer, train, {"dataset": dataset, "variant": "mult", "task": "regression"},
                    dataset="multibench", methods=methods)


def _synib(dataset: str) -> Protocol:
    """SynIB's MultiBench protocol (its ``run/configs/FactorCL`` configs): pre-trained FactorCL encoders, V + T."""
    variant, (lam, p, lr, wd), (lam_learned, lam_sp), options = _SYNIB[dataset]
    factorcl = ("factorcl", {"hidden_size": 40})
    model = ModelConfig(**_sequences(vision=factorcl, text=factorcl), fusion="concat", fusion_hidden=(64,),
                        unimodal_hidden=(), dropout=0.1)
    optimizer = OptimizerConfig(name="adam", lr=1e-4, weight_decay=1e-4, schedule="cosine_restarts",
                                warmup_steps=780, restart_steps=4, restart_mult=2)
    train = TrainConfig(epochs=100, batch_size=32, eval_batch_size=256, select="best", patience=30,
                        pretrain_epochs=100)
    methods = {("synib", "random"): MethodSettings(options, {"lam": lam, "p": p}, {"lr": lr, "weight_decay": wd}),
               ("synib", "learned"): MethodSettings(options, {"lam": lam_learned, "lam_sp": lam_sp})}
    return Protocol(model, optimizer, train, {"dataset": dataset, "variant": variant}, dataset="multibench",
                    modalities=("vision", "text"), methods=methods)


def _dmil() -> Protocol:
    """DMIL on CMU-MOSEI, vision + text (the paper's Table 1 row; settings ours, see the module docstring)."""
    transformer = ("transformer", {"d_model": 64, "heads": 4, "layers": 2})
    model = ModelConfig(**_sequences(vision=transformer, text=transformer), fusion="concat", fusion_hidden=(64,),
                        unimodal_hidden=(), dropout=0.1)
    optimizer = OptimizerConfig(name="adam", lr=1e-4, weight_decay=1e-4)
    train = TrainConfig(epochs=30, batch_size=32, eval_batch_size=256, select="best", patience=10)
    methods = {("dmil", None): MethodSettings({"stage_epochs": (10, 10)})}
    return Protocol(model, optimizer, train, {"dataset": "mosei", "variant": "mult"}, dataset="multibench",
                    modalities=("vision", "text"), methods=methods)


def apply_protocol(cfg: RunConfig, name: str) -> RunConfig:
    """Sets ``cfg``'s model, optimiser and loop to protocol ``name``, and its dataset, modalities and
    the settings it has for ``cfg.method``.

    Dataset options, method options and hyper-parameters already in ``cfg`` are kept (the protocol
    only fills missing ones); a method setting keyed by a mask applies when ``cfg``'s
    ``method_options['mask']`` (or the method's default mask) is that one.
    """
    p = protocol(name)
    cfg.model, cfg.optimizer, cfg.train = p.model, p.optimizer, p.train
    cfg.dataset_options = {**p.dataset_options, **cfg.dataset_options}
    cfg.dataset = p.dataset or cfg.dataset
    cfg.modalities = p.modalities or cfg.modalities
    methods = {key: s for key, s in p.methods.items() if key[0] == cfg.method}
    if methods:
        mask = cfg.method_options.get("mask", options_of(cfg.method).get("mask"))
        settings = methods.get((cfg.method, mask)) or methods.get((cfg.method, None))
        if settings is not None:
            cfg.method_options = {**settings.options, **cfg.method_options}
            cfg.hparams = {**settings.hparams, **cfg.hparams}
            cfg.optimizer = dataclasses.replace(cfg.optimizer, **settings.optimizer)
    return cfg
