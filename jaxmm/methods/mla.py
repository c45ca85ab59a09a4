"""MLA: alternating unimodal adaptation through a shared head (Zhang et al., CVPR 2024).

Training alternates modalities step by step: step ``t`` trains modality
``modalities[t mod M]`` alone on ``CE(H(z_m), y)``, ``H`` one head shared by
every modality; only that encoder (and ``H``) moves on the step
(``trainable``: the other encoders keep their exact values, no momentum or
weight-decay drift). Before every step but the first, the OWM projector of
:func:`jaxmm.transforms.mla.mla` is updated with the step's mean feature
(over the global batch's valid rows) and the gradient of ``H``'s kernel is
projected; the forgetting factor reads the fraction of the epoch done,
``(t − t_epoch) / steps_per_epoch`` (the epoch hook records both; 0 throughout
the first epoch, whose length is not yet known).
Inference fuses the unimodal predictions ``H(z_m)`` with test-time
uncertainty weights (:func:`fuse_predictions`).

Differences to the official code (MLA ``main.py`` and BalanceBenchmark):

* The code takes one optimiser step per modality on the *same* batch (two steps
  per batch); here consecutive steps read consecutive batches, so a modality
  sees every ``M``-th batch of an epoch (train ``M`` times the epochs for the
  code's number of updates). Inactive encoders keep their optimiser state.
* ``projection``: ``replace`` (paper's intent, default), ``none`` (official
  code: the guard never matches, so no projection), ``add`` (BalanceBenchmark).
* ``fusion``: ``entropy`` (per example, the paper's figure; default),
  ``entropy_batch`` (official code: one weight per modality per evaluation
  chunk, softmax over the batch axis; the chunk is ``train.eval_batch_size``
  examples, the last one padded with repeats, so set it to the code's test batch
  size to match) or ``fixed`` (``fixed_weights``; the code's non-dynamic
  default is 0.55 / 0.45).
* The shared head is the first (sorted) modality's unimodal head, applied to
  every modality's feature (the model API builds heads at the encoder width;
  the other unimodal heads are unused and stay frozen).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm.batch_reduce import batch_mean
from jaxmm.losses.ce import as_categorical
from jaxmm.methods.base import EpochHook, GradientTransform, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.groups import path_keys
from jaxmm.models.multimodal import ModelOutput
from jaxmm.transforms.mla import mla as mla_transform

FUSIONS = ("entropy", "entropy_batch", "fixed")


def _probabilities(logits):
    """Class probabilities ``[..., K]`` (a single logit is a binary sigmoid head: ``K = 2``)."""
    return jax.nn.softmax(as_categorical(logits), axis=-1)


def _entropy(p, axis):
    return -jnp.sum(p * jnp.log(jnp.clip(p, 1e-12)), axis=axis)


def fuse_predictions(logits: dict, fusion: str = "entropy", fixed_weights=()) -> jax.Array:
    """MLA test-time fusion ``ŷ = Σ_m λ_m y_m`` of the unimodal logits.

    Args:
      logits: modality -> ``[B, K]`` logits ``y_m = H(z_m)``.
      fusion: ``entropy``: ``λ_m = softmax_m(−e_m)`` with ``e_m`` the entropy of
        example ``i``'s prediction, equal to the paper's
        ``exp(max_k e_k − e_m) / Σ_j exp(max_k e_k − e_j)``; ``entropy_batch``: the
        code's variant, ``e_m`` the entropy of ``softmax`` taken over the *batch*
        axis, summed over the batch (one weight per modality); ``fixed``:
        ``λ = fixed_weights``.
      fixed_weights: one weight per modality (in ``logits`` order) for ``fixed``.

    Returns:
      ``[B, K]`` fused logits.
    """
    ys = jnp.stack(list(logits.values()))  # [M, B, K]
    if fusion == "fixed":
        lam = jnp.asarray(fixed_weights, ys.dtype)[:, None, None]
    elif fusion == "entropy":
        lam = jax.nn.softmax(-_entropy(_probabilities(ys), -1), axis=0)[..., None]
    else:
        lam = jax.nn.softmax(-_entropy(jax.nn.softmax(ys, axis=1), (1, 2)), axis=0)[:, None, None]
    return jnp.sum(lam * ys, axis=0)


def _shared(modalities) -> str:
    return min(modalities)


@register("mla")
def mla(projection: str = "replace", denominator: str = "scalar", base: float = 0.1, fusion: str = "entropy",
        fixed_weights: tuple = ()) -> Method:
    """MLA: alternating unimodal steps through a shared head, OWM projection, entropy-weighted fusion.

    Args:
      projection: ``replace`` (paper), ``none`` (official code) or ``add``
        (BalanceBenchmark), see :func:`jaxmm.transforms.mla.mla`.
      denominator: ``scalar`` (OWM ``α + r k``) or ``outer`` (both codes' ``α + k r``).
      base: base of the forgetting factor ``α_t = base^{1 + t/T}`` (0.1).
      fusion: test-time fusion, ``entropy``, ``entropy_batch`` or ``fixed`` (see :func:`fuse_predictions`).
      fixed_weights: per-modality weights of ``fixed`` (model order), e.g. ``(0.55, 0.45)``.

    Raises:
      ValueError: an unknown option value, or ``fixed`` without one weight per modality.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"mla: unknown fusion {fusion!r}; choose one of {FUSIONS}")
    if fusion == "fixed" and not fixed_weights:
        raise ValueError("mla: fusion='fixed' needs fixed_weights, one per modality, e.g. (0.55, 0.45)")
    mla_transform(labels=None, projection=projection, denominator=denominator, base=base)  # validates now

    def active_of(step, modalities):
        return jnp.arange(len(modalities)) == jnp.mod(step, len(modalities))

    def terms(model, batch, ctx):
        mods = model.modalities
        if fixed_weights and len(fixed_weights) != len(mods):
            raise ValueError(f"mla: fixed_weights {fixed_weights} needs one weight per modality {mods}")
        active = active_of(ctx.step, mods)
        features = model.encode(batch.inputs)
        widths = {m: f.shape[-1] for m, f in features.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"mla: the shared head needs one feature width for every modality, got {widths}")
        ce = sum(jnp.where(active[i], ctx.loss(model.unimodal(_shared(mods), features[m]), batch.label), 0.0)
                 for i, m in enumerate(mods))
        feature = sum(jnp.where(active[i], features[m], 0.0) for i, m in enumerate(mods))
        ms = ctx.state
        fraction = jnp.where(ms["steps_per_epoch"] > 0,
                             (ctx.step - ms["epoch_start"]) / jnp.maximum(ms["steps_per_epoch"], 1), 0.0)
        valid = batch.meta.get("valid")
        signals = {"features": batch_mean(feature, valid)[None, :],
                   "epoch_fraction": jnp.clip(fraction, 0.0, 1.0)}
        return Terms({"ce": ce}, signals=signals,
                     logs={f"active/{m}": active[i].astype(jnp.float32) for i, m in enumerate(mods)})

    def trainable(params, ctx):
        active = dict(zip(ctx.modalities, active_of(ctx.step, ctx.modalities)))
        shared = _shared(ctx.modalities)

        def keep(path, _):
            keys = path_keys(path)
            if keys[0] == "encoders":
                return active[keys[1]]
            return keys[0] != "unimodal_heads" or keys[1] == shared

        return jax.tree_util.tree_map_with_path(keep, params)

    def forward(model, inputs, ctx=None):
        features = model.encode(inputs)
        shared = _shared(model.modalities)
        uni = {m: model.unimodal(shared, features[m]) for m in model.modalities}
        return ModelOutput(fuse_predictions(uni, fusion, fixed_weights), uni, features)

    def record_epoch_start(run, context):
        steps = jnp.asarray(run.step, jnp.int32)
        return run._replace(state={"epoch_start": steps, "steps_per_epoch": steps // (context.epoch + 1)})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True, pieces=("encode", "unimodal")),
        forward=forward,
        init_state=lambda model, batch: {"epoch_start": jnp.zeros((), jnp.int32),
                                         "steps_per_epoch": jnp.zeros((), jnp.int32)},
        transform=GradientTransform(lambda modalities, labels: mla_transform(
            labels=labels, head_label="head", projection=projection, denominator=denominator, base=base)),
        trainable=trainable,
        epoch_end=EpochHook(record_epoch_start),
    )
