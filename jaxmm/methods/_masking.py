"""Counterfactual corruption shared by SynIB and the masking-only control.

Values are masked either at the input (synthetic protocols) or at the encoder
output (``level="latent"``, real-data protocols).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.counterfactual.fills import FILLS, fill_values
from jaxmm.counterfactual.learned import LearnedMaskConfig, learn_unimodal_mask
from jaxmm.counterfactual.masks import corrupt, random_mask
from jaxmm.counterfactual.passes import counterfactual_outputs
from jaxmm.data.types import Batch
from jaxmm.monitors.feature_stats import init_feature_stats, update_feature_stats

MASKS = ("random", "learned", "oracle")
LEVELS = ("input", "latent")


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """How counterfactual inputs are built.

    Attributes:
      mask: ``random`` (Bernoulli(p) per coordinate), ``learned`` (complement of the
        adversarial unimodal mask) or ``oracle`` (the dataset's ``mask/<modality>``).
      fill: replacement values, see :func:`jaxmm.counterfactual.fills.fill_values`.
      level: ``input`` or ``latent`` (encoder features).
      learned: inner-problem settings of the learned mask.
      learned_target: ``complement`` (paper, synthetic code: corrupt what the unimodal
        head does not need) or ``important`` (real-data code at 3f3d3b86: corrupt the
        unimodally-important set itself).
      ema_momentum: momentum of the running statistics used by ``fill="ema"``.
    """

    mask: str = "random"
    fill: str = "noise"
    level: str = "input"
    learned: LearnedMaskConfig = LearnedMaskConfig()
    learned_target: str = "complement"
    ema_momentum: float = 0.99

    def __post_init__(self):
        for name, value, valid in (("mask", self.mask, MASKS), ("fill", self.fill, FILLS),
                                   ("level", self.level, LEVELS),
                                   ("learned_target", self.learned_target, ("complement", "important"))):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; choose one of {valid}")
        if self.mask == "oracle" and self.level == "latent":
            raise ValueError("oracle masks mark input coordinates; use level='input' with mask='oracle'")


def masking_config(mask: str, fill: str, level: str, *, learned_target: str = "complement",
                   ema_momentum: float = 0.99, **learned) -> MaskingConfig:
    """A :class:`MaskingConfig` from flat method options (``learned_<field>`` → ``LearnedMaskConfig``)."""
    inner = {k.removeprefix("learned_"): v for k, v in learned.items()}
    return MaskingConfig(mask=mask, fill=fill, level=level, learned_target=learned_target,
                         ema_momentum=ema_momentum, learned=LearnedMaskConfig(**inner))


def clean_values(batch: Batch, cfg: MaskingConfig, features):
    """The values the masks act on: the inputs or the encoder features."""
    return dict(batch.inputs) if cfg.level == "input" else features


def fused_from_values(model, values, cfg: MaskingConfig, return_trunk: bool = False):
    """Fused logits computed from (possibly corrupted) values."""
    features = model.encode(values) if cfg.level == "input" else values
    return model.fuse(features, return_trunk=return_trunk)


def _unimodal_from_value(model, modality, value, cfg: MaskingConfig):
    feature = model.encode_one(modality, value) if cfg.level == "input" else value
    return model.unimodal_heads[modality](feature)


def pure(model, fn):
    """``fn(model, *args)`` as a pure function of ``args`` on a frozen copy of ``model``.

    Needed inside ``vmap``/``scan``/``grad`` transforms: state changes made there
    (dropout counters, batch statistics) are discarded instead of leaking tracers.
    """
    graphdef, state = nnx.split(model)
    return lambda *args: fn(nnx.merge(graphdef, state, copy=True), *args)


def init_masking_state(model, batch: Batch, cfg: MaskingConfig):
    """EMA statistics per modality for ``fill="ema"`` (empty otherwise)."""
    if cfg.fill != "ema":
        return {}
    shapes = jax.eval_shape(pure(model, lambda mod: clean_values(batch, cfg, mod.encode(batch.inputs))))
    return {"stats": {m: init_feature_stats(s.shape[1:]) for m, s in shapes.items()}}


def corrupt_all(model, batch: Batch, values, ctx, cfg: MaskingConfig, valid):
    """Corrupted values for every modality, and the updated masking state.

    Returns:
      (modality -> corrupted ``[B, ...]``, new state, modality -> corruption rate).
    """
    state = ctx.state.get("masking", {})
    keys = jax.random.split(ctx.rng, 2 * len(values))
    corrupted, rates = {}, {}
    new_stats = {}
    for i, (m, x) in enumerate(values.items()):
        stats = state["stats"][m] if cfg.fill == "ema" else None
        fill = fill_values(cfg.fill, keys[2 * i], x, stats)
        if cfg.mask == "random":
            mask = random_mask(keys[2 * i + 1], x.shape, ctx.hparams["p"])
        elif cfg.mask == "oracle":
            if f"mask/{m}" not in batch.meta:
                raise ValueError(f"mask='oracle' needs the dataset to provide 'mask/{m}' in its meta")
            mask = batch.meta[f"mask/{m}"].reshape(x.shape)
        else:
            unimodal_loss = pure(model, lambda mod, xc, m=m: ctx.loss(
                _unimodal_from_value(mod, m, xc, cfg), batch.label))
            important = learn_unimodal_mask(unimodal_loss, x, fill, cfg.learned, sparsity=ctx.hparams.get("lam_sp"))
            mask = 1.0 - important if cfg.learned_target == "complement" else important
        corrupted[m] = corrupt(x, mask, fill)
        rates[m] = jnp.mean(mask)
        if cfg.fill == "ema":
            new_stats[m] = update_feature_stats(stats, x, cfg.ema_momentum, valid)
    new_state = {"stats": new_stats} if cfg.fill == "ema" else state
    return corrupted, new_state, rates


def clean_features_reusable(model, cfg: MaskingConfig) -> bool:
    """Whether the counterfactual passes may reuse the clean pass's encoder features.

    True at ``level="input"`` unless the model holds an active ``nnx.Dropout``: re-encoding a clean
    input then returns its clean-pass feature (train-mode BatchNorm normalises the same clean batch
    either way), assuming, as the model protocol says, ``encode(inputs)[m] == encode_one(m,
    inputs[m])``. With dropout the official code's re-encoding draws new masks, so that form is
    kept. At ``level="latent"`` the passes encode nothing.
    """
    if cfg.level != "input":
        return False
    return not any(isinstance(m, nnx.Dropout) and m.rate > 0 and not m.deterministic
                   for _, m in nnx.iter_modules(model))


def counterfactual_logits(model, values, corrupted, cfg: MaskingConfig, return_trunk: bool = False,
                          features=None):
    """Fused logits with each modality corrupted in turn: leading axis = modality.

    Args:
      features: the clean pass's encoder features, to reuse for the clean modalities (only encode
        the corrupted one, then fuse); ``None``: every pass encodes all its (partly corrupted) inputs.
    """
    if features is None:
        forward = pure(model, lambda mod, v: fused_from_values(mod, v, cfg, return_trunk))
        return counterfactual_outputs(forward, values, corrupted)
    encoded = {m: pure(model, lambda mod, x, m=m: mod.encode_one(m, x))(x) for m, x in corrupted.items()}
    fuse = pure(model, lambda mod, f: mod.fuse(f, return_trunk=return_trunk))
    return counterfactual_outputs(fuse, features, encoded)


def clean_and_counterfactual(model, batch: Batch, ctx, cfg: MaskingConfig, return_trunk: bool = False):
    """The clean forward pass and the vmapped counterfactual passes of one step.

    At the input level each counterfactual pass encodes only its corrupted modality and reuses
    the clean features of the others where that is exact (:func:`clean_features_reusable`).

    Returns:
      (clean :class:`ModelOutput`, counterfactual fused logits ``[M, B, K]`` (with the
      trunk features too if ``return_trunk``), corrupted modality names in order,
      new masking state, modality -> corruption rate).
    """
    out = model(batch.inputs)
    values = clean_values(batch, cfg, out.features)
    corrupted, state, rates = corrupt_all(model, batch, values, ctx, cfg, batch.meta.get("valid"))
    reuse = out.features if clean_features_reusable(model, cfg) else None
    cf = counterfactual_logits(model, values, corrupted, cfg, return_trunk, features=reuse)
    return out, cf, list(corrupted), state, rates
