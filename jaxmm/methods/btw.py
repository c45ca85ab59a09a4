"""BTW (Beyond Two-modality Weighting, EMNLP 2025 Findings): bi-level non-parametric fusion weights.

Each (train example, modality) has a weight ``w_{i,m}``, refreshed by the ``epoch_end`` hook
from the whole train split (``methods.md`` §2.2, :mod:`jaxmm.losses.btw`): the instance-level
``KL(p^m_i ‖ p^mm_i)`` min-max normalised per modality, times the modality-level
``I(ŷ^m; ŷ^mm)`` (KSG by default), smoothed across refreshes ``w ← s·w* + (1−s)·w`` with ``s``
moved by ±``smooth_step`` from the validation loss (the code uses the test loss). Weights start
at 1 [INF] and live in the method state, indexed by ``batch.index``. By default
(``apply="embedding"``, the official code) each modality's encoder feature is multiplied by its
weight before fusion and the loss is the plain task CE; ``apply="loss"`` instead leaves fusion
alone and adds ``Σ_m w_{i,m}·CE(ŷ^m_i, y_i)`` (the paper text's reading).

Our adaptations, which differ from the code:

* the unimodal predictions ``ŷ^m`` are the model's own unimodal heads, trained on
  gradient-stopped features (``detach_heads``, so they are probes that do not shape the
  encoders) instead of separately pre-trained unimodal models loaded from files;
* ``p^mm`` at a refresh is the model's evaluation pass, which scales every example's features by
  the modality's mean train weight (the per-example weights of the train split are not visible
  to the evaluation pass); the same mean weights are used for validation and test examples
  (the code computes transductive weights for them from the current test predictions);
* the classification trainer only: the Gaussian (regression) KL of the code is in
  :func:`jaxmm.losses.btw.btw_kl` but has no method counterpart here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.losses import classification_loss
from jaxmm.losses._common import check_option
from jaxmm.losses.btw import (
    COMBINES, MI_ESTIMATORS, btw_refresh_due, btw_schedule_init, btw_schedule_update,
    btw_smooth_weights, btw_target_weights)
from jaxmm.methods._buffers import ModalityBuffer, check_modalities, set_buffer
from jaxmm.methods.base import Method, ModelSpec
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput
from jaxmm.transforms._tree import put_like

APPLY = ("embedding", "loss")


def scaled_forward(model, inputs, weights, *, detach_heads: bool = True):
    """Fused logits from features scaled per modality, and unscaled unimodal head logits.

    Args:
      model: the model.
      inputs: modality -> ``[B, ...]``.
      weights: ``[B, M]`` or ``[M]`` per-modality weights (``None``: no scaling).
      detach_heads: unimodal heads read gradient-stopped features.

    Returns:
      ``ModelOutput`` with the fused logits of the scaled features.
    """
    out_features = model.encode(inputs)
    scaled = out_features
    if weights is not None:
        w = jnp.broadcast_to(weights, (next(iter(out_features.values())).shape[0], len(model.modalities)))
        scaled = {m: out_features[m] * w[:, j, None] for j, m in enumerate(model.modalities)}
    uni = {m: model.unimodal(m, jax.lax.stop_gradient(z) if detach_heads else z)
           for m, z in out_features.items()}
    return ModelOutput(logits=model.fuse(scaled), unimodal_logits=uni, features=out_features)


@register("btw")
def btw(apply: str = "embedding", combine: str = "kl+mi", mi_estimator: str = "ksg", k: int = 3,
        refresh_every: int = 1, smooth: float = 0.5, smooth_step: float = 0.05,
        detach_heads: bool = True, rescale: bool = False, max_examples: int = 65536) -> Method:
    """BTW: per-example, per-modality weights from KL to the fused prediction × modality MI.

    Args:
      apply: ``"embedding"`` (code, default: scale each modality's feature before fusion) or
        ``"loss"`` (weight each modality's unimodal CE).
      combine: ``"kl+mi"`` (BTW) or ``"kl"`` (the BTW-kl ablation).
      mi_estimator: ``"ksg"`` (the code's k-NN estimator, on the probability vectors) or
        ``"plugin"`` (MI between predicted classes).
      k: KSG neighbours (sklearn's 3).
      refresh_every: refresh every this many epochs (MIMIC code 1, regression code 5).
      smooth: initial smoothing factor ``s`` (0.5).
      smooth_step: change of ``s`` per refresh (0.05).
      detach_heads: with ``apply="embedding"``, the unimodal heads (the ``ŷ^m`` of the KL) train
        on gradient-stopped features [INF: standing in for separately trained unimodal models].
      rescale: divide each refresh's target weights by their mean over the split and the
        modalities, keeping the relative emphasis but an average scale of 1 [INF]. ``w* = k̃·I``
        is mostly well below 1, which shrinks the fused input; the code's Transformer fusion
        re-normalises it (LayerNorm), an MLP on concatenated features does not and learns slowly.
      max_examples: size of the per-example weight table (at least the train split size).

    Hyper-parameters (vmappable): ``lam_uni``, the weight of the unimodal heads' CE (weighted
    by ``w`` with ``apply="loss"``).
    """
    check_option("apply", apply, APPLY)
    check_option("combine", combine, COMBINES)
    check_option("mi_estimator", mi_estimator, MI_ESTIMATORS)
    if refresh_every < 1 or not 0.0 < smooth_step <= 1.0 or k < 1 or max_examples < 1:
        raise ValueError(f"need refresh_every >= 1, 0 < smooth_step <= 1, k >= 1 and max_examples "
                         f">= 1; got refresh_every={refresh_every}, smooth_step={smooth_step}, "
                         f"k={k}, max_examples={max_examples}.")
    schedule0 = btw_schedule_init(smooth)
    detach = detach_heads and apply == "embedding"

    def init_state(model, batch):
        check_modalities(len(model.modalities), "btw")
        return {"weights": jnp.ones((max_examples, len(model.modalities)), jnp.float32),
                "smooth": schedule0.smooth, "best_loss": schedule0.best_loss}

    def terms(model, batch, ctx):
        w = ctx.method_state["weights"][batch.index]  # [B, M]
        out = scaled_forward(model, batch.inputs, w if apply == "embedding" else None,
                             detach_heads=detach)
        uni = [classification_loss(out.unimodal_logits[m], batch.label) for m in model.modalities]
        if apply == "loss":
            uni = [w[:, j] * ce for j, ce in enumerate(uni)]
        aux = {f"btw_w/{m}": jnp.mean(w[:, j]) for j, m in enumerate(model.modalities)}
        return {"ce": classification_loss(out.logits, batch.label), "uni_ce": sum(uni)}, aux

    def forward(model, inputs):
        weights = model.extras["btw"].read(len(model.modalities))
        return scaled_forward(model, inputs, weights if apply == "embedding" else None,
                              detach_heads=detach)

    def epoch_end(state, stats, context):
        ms = state.method_state
        labels = np.asarray(context.data["train"].label)
        runs, n = labels.shape
        if n > max_examples:
            raise ValueError(f"btw: the train split has {n} examples but max_examples="
                             f"{max_examples}; pass max_examples >= {n}.")
        val = context.outputs(state, "val")
        val_loss = jnp.mean(classification_loss(jnp.asarray(val.logits),
                                                jnp.asarray(context.data["val"].label)), axis=-1)
        due = btw_refresh_due(context.epoch + 1, refresh_every)
        schedule = btw_schedule_init(smooth)._replace(smooth=ms["smooth"], best_loss=ms["best_loss"])
        weights = ms["weights"]
        if due:
            out = context.outputs(state, "train")
            mods = list(out.unimodal_logits)
            keys = jax.random.split(jax.random.fold_in(jax.random.key(0), context.epoch), runs)
            target = jax.vmap(lambda uni, fused, key: btw_target_weights(
                uni, fused, combine=combine, mi_estimator=mi_estimator, k=k, key=key))(
                    [jnp.asarray(out.unimodal_logits[m]) for m in mods], jnp.asarray(out.logits), keys)
            if rescale:
                target = target / jnp.maximum(jnp.mean(target, axis=(1, 2), keepdims=True), 1e-12)
            current = weights[:, :n]
            smoothed = jax.vmap(btw_smooth_weights)(current, target, schedule)
            weights = weights.at[:, :n].set(smoothed)
        schedule = jax.vmap(lambda s, loss: btw_schedule_update(s, loss, refreshed=due,
                                                                step=smooth_step))(schedule, val_loss)
        method_state = put_like({"weights": weights, "smooth": schedule.smooth,
                                 "best_loss": schedule.best_loss}, ms)
        rest = set_buffer(state.rest, "btw", jnp.mean(weights[:, :n], axis=1)) if due else state.rest
        return state._replace(method_state=method_state, rest=rest)

    return Method(
        name="btw", summary=btw.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 1.0}, model=ModelSpec(fuse=True, unimodal_heads=True),
        forward=forward, init_state=init_state,
        extra_modules=lambda width, num_outputs, rngs, feature_widths: {"btw": ModalityBuffer(1.0)},
        epoch_end=epoch_end,
        options={"apply": apply, "combine": combine, "mi_estimator": mi_estimator, "k": k,
                 "refresh_every": refresh_every, "smooth": smooth, "smooth_step": smooth_step,
                 "detach_heads": detach_heads, "rescale": rescale, "max_examples": max_examples},
    )
