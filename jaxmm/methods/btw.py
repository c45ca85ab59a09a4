"""BTW (Beyond Two-modality Weighting, EMNLP 2025 Findings): bi-level non-parametric fusion weights.

Each (train example, modality) has a weight ``w_{i,m}``, refreshed by the ``epoch_end`` hook
from the whole train split (:mod:`jaxmm.losses.btw`): the instance-level KL between the unimodal
and the fused prediction min-max normalised per modality, times the modality-level
``I(ŷ^m; ŷ^mm)`` (KSG by default), smoothed across refreshes ``w ← s·w* + (1−s)·w`` with ``s``
moved by ±``smooth_step`` from the validation task loss (the code uses the test loss). Weights
start at 1 [INF] and live in the method state, indexed by ``batch.index``. By default
(``apply="embedding"``, the official code) each modality's encoder feature is multiplied by its
weight before fusion and the loss is the plain task loss; ``apply="loss"`` instead leaves fusion
alone and adds ``Σ_m w_{i,m}·ℓ(ŷ^m_i, y_i)`` (the paper text's reading).

Both task kinds (``ModelSpec.tasks``):

* classification: ``KL(p^m ‖ p^mm)`` (categorical, Bernoulli for one logit), degenerate
  normalisation value 0;
* regression (MOSI/MOSEI, one output): the Gaussian ``KL(N(ŷ^m, σ_p²) ‖ N(ŷ^mm, σ_q²))`` with
  ``σ_p = 0.1`` and a constant ``σ_q = 1``, floored at 1e-5; degenerate value 1e-4; the MI by KSG
  on the scalar predictions (floor 1e-5). The code fits ``log σ_q`` per example with an MLP ``V`` on the
  fused hidden vector (d→128→64→1, re-trained for 10 epochs at every refresh); that MLP is not
  implemented: its fitted ``σ_q`` stays near 1, the spec's accepted simplification.

BTW's own model is the built-in classifier with ``ModelConfig(projection=128, fusion="moe",
fusion_hidden=(128,))``: the projection ``Linear → ReLU → Linear`` after each encoder, so the
weights multiply the projected embeddings as in the code, then the MoE cross encoder
(:class:`jaxmm.models.fusion.MoEFusion`, which normalises with its own LayerNorms) and the fusion
head in place of the code's SubNet (see the BTW documentation page). Use ``normalize=False``
with it: the extra LayerNorm below is a stand-in for that cross encoder on plain fusions.

Our adaptations, which differ from the code:

* the unimodal predictions ``ŷ^m`` are the model's own unimodal heads, trained on
  gradient-stopped features (``detach_heads``, so they are probes that do not shape the
  encoders) instead of separately pre-trained unimodal models loaded from files;
* ``p^mm`` at a refresh is the model's evaluation pass, which scales every example's features by
  the modality's mean train weight (kept in the method state: the per-example weights exist for
  train examples only); the same mean weights are used for validation and test examples
  (the code computes transductive weights for them from the current test predictions);
* with a plain fusion (concatenation under an MLP) the official cross encoder's normalisation is
  missing, so ``normalize=True`` (default) applies a LayerNorm over the concatenated weighted
  features: weights far below 1 change the modalities' relative emphasis but do not shrink the
  fused input and its gradients (``normalize=False``: fuse the weighted features as they are, the
  setting for the ``moe`` fusion).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_mean
from jaxmm.losses.btw import (
    COMBINES, MI_ESTIMATORS, btw_refresh_due, btw_schedule_init, btw_schedule_update,
    btw_smooth_weights, btw_target_weights)
from jaxmm.methods.base import EpochHook, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput

APPLY = ("embedding", "loss")


def scaled_forward(model, inputs, weights, *, detach_heads: bool = True, normalize: bool = False):
    """Fused logits from features scaled per modality, and unscaled unimodal head logits.

    Args:
      model: the model.
      inputs: modality -> ``[B, ...]``.
      weights: ``[B, M]`` or ``[M]`` per-modality weights (``None``: no scaling).
      detach_heads: unimodal heads read gradient-stopped features.
      normalize: LayerNorm (``model.extras["btw_norm"]``) over the concatenated scaled features
        before fusion.

    Returns:
      ``ModelOutput`` with the fused logits of the scaled features.
    """
    features = model.encode(inputs)
    mods = model.modalities
    scaled = features
    if weights is not None:
        w = jnp.broadcast_to(weights, (next(iter(features.values())).shape[0], len(mods)))
        scaled = {m: features[m] * w[:, j, None] for j, m in enumerate(mods)}
    if normalize:
        joint = model.extras["btw_norm"](jnp.concatenate([scaled[m] for m in mods], axis=-1))
        ends = np.cumsum([scaled[m].shape[-1] for m in mods])[:-1]
        scaled = dict(zip(mods, jnp.split(joint, ends.tolist(), axis=-1)))
    uni = {m: model.unimodal(m, jax.lax.stop_gradient(z) if detach_heads else z) for m, z in features.items()}
    return ModelOutput(logits=model.fuse(scaled), unimodal_logits=uni, features=features)


@register("btw")
def btw(apply: str = "embedding", combine: str = "kl+mi", mi_estimator: str = "ksg", k: int = 3,
        refresh_every: int = 1, smooth: float = 0.5, smooth_step: float = 0.05,
        detach_heads: bool = True, rescale: bool = False, normalize: bool = True,
        max_examples: int = 65536) -> Method:
    """BTW: per-example, per-modality weights from KL to the fused prediction × modality MI.

    Args:
      apply: ``"embedding"`` (code, default: scale each modality's feature before fusion) or
        ``"loss"`` (weight each modality's unimodal task loss).
      combine: ``"kl+mi"`` (BTW) or ``"kl"`` (the BTW-kl ablation).
      mi_estimator: ``"ksg"`` (the code's k-NN estimator, on the probability vectors, or on the
        scalar predictions for regression) or ``"plugin"`` (MI between predicted classes;
        classification only).
      k: KSG neighbours (sklearn's 3).
      refresh_every: refresh every this many epochs (MIMIC code 1, regression code 5).
      smooth: initial smoothing factor ``s`` (0.5).
      smooth_step: change of ``s`` per refresh (0.05).
      detach_heads: with ``apply="embedding"``, the unimodal heads (the ``ŷ^m`` of the KL) train
        on gradient-stopped features [INF: standing in for separately trained unimodal models].
      rescale: divide each refresh's target weights by their mean over the split and the
        modalities, keeping the relative emphasis but an average scale of 1 [INF].
      normalize: with ``apply="embedding"``, a LayerNorm over the concatenated weighted features
        before fusion, as the official cross encoder normalises (default); ``False``: fuse the
        weighted features as they are (``w* = k̃·I`` is mostly well below 1, which shrinks the
        fused input and the encoders' gradients). Set ``False`` with BTW's own model
        (``fusion="moe"``), which normalises itself.
      max_examples: size of the per-example weight table (at least the train split size).

    Hyper-parameters (vmappable): ``lam_uni``, the weight of the unimodal heads' task loss
    (weighted by ``w`` with ``apply="loss"``).
    """
    check_choice("apply", apply, APPLY, owner="btw")
    check_choice("combine", combine, COMBINES, owner="btw")
    check_choice("mi_estimator", mi_estimator, MI_ESTIMATORS, owner="btw")
    if refresh_every < 1 or not 0.0 < smooth_step <= 1.0 or k < 1 or max_examples < 1:
        raise ValueError(f"btw: need refresh_every >= 1, 0 < smooth_step <= 1, k >= 1 and max_examples "
                         f">= 1; got refresh_every={refresh_every}, smooth_step={smooth_step}, "
                         f"k={k}, max_examples={max_examples}.")
    schedule0 = btw_schedule_init(smooth)
    embedding = apply == "embedding"
    detach = detach_heads and embedding
    norm = normalize and embedding

    def init_state(model, batch):
        m = len(model.modalities)
        return {"weights": jnp.ones((max_examples, m), jnp.float32), "mean_weights": jnp.ones((m,), jnp.float32),
                "smooth": schedule0.smooth, "best_loss": schedule0.best_loss}

    def terms(model, batch, ctx):
        w = ctx.state["weights"][batch.index]  # [B, M]
        out = scaled_forward(model, batch.inputs, w if embedding else None, detach_heads=detach, normalize=norm)
        uni = [ctx.loss(out.unimodal_logits[m], batch.label) for m in model.modalities]
        if not embedding:
            uni = [w[:, j] * ce for j, ce in enumerate(uni)]
        logs = {f"btw_w/{m}": batch_mean(w[:, j]) for j, m in enumerate(model.modalities)}
        return Terms({"ce": ctx.loss(out.logits, batch.label), "uni_ce": sum(uni)}, logs=logs)

    def forward(model, inputs, ctx):
        weights = ctx.state["mean_weights"] if embedding else None
        return scaled_forward(model, inputs, weights, detach_heads=detach, normalize=norm)

    def refresh(run, context):
        ms, task = run.state, context.task
        val_loss = jnp.mean(task.loss(context.outputs["val"].logits, context.labels["val"]))
        due = btw_refresh_due(context.epoch + 1, refresh_every)
        schedule = schedule0._replace(smooth=ms["smooth"], best_loss=ms["best_loss"])
        weights, mean_weights = ms["weights"], ms["mean_weights"]
        if due:
            out = context.outputs["train"]
            n = out.logits.shape[0]
            if n > max_examples:
                raise ValueError(f"btw: the train split has {n} examples but max_examples={max_examples}; "
                                 f"pass max_examples >= {n}.")
            key = jax.random.fold_in(jax.random.key(0), context.epoch)
            target = btw_target_weights([out.unimodal_logits[m] for m in out.unimodal_logits], out.logits,
                                        task=task.kind, combine=combine, mi_estimator=mi_estimator, k=k, key=key)
            if rescale:
                target = target / jnp.maximum(jnp.mean(target), 1e-12)
            weights = weights.at[:n].set(btw_smooth_weights(weights[:n], target, schedule))
            mean_weights = jnp.mean(weights[:n], axis=0)
        schedule = btw_schedule_update(schedule, val_loss, refreshed=due, step=smooth_step)
        return run._replace(state={"weights": weights, "mean_weights": mean_weights, "smooth": schedule.smooth,
                                   "best_loss": schedule.best_loss})

    def extras(model, num_outputs, rngs):
        return {"btw_norm": nnx.LayerNorm(sum(model.feature_widths.values()), rngs=rngs)}

    def reads(epoch, num_epochs):
        return ("val", "train") if btw_refresh_due(epoch + 1, refresh_every) else ("val",)

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=True, extras=extras if norm else None,
                        pieces=("encode", "fuse", "unimodal") + (("feature_widths",) if norm else ()),
                        tasks=("classification", "regression")),
        forward=forward, init_state=init_state,
        epoch_end=EpochHook(refresh, reads=reads),
    )
