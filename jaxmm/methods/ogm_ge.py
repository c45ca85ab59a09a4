"""OGM-GE bound to the method interface (Peng et al., CVPR 2022).

The loss is the fused CE alone. Every step the discrepancy scores
``s_m = Σ_i p(out_m,i)[y_i]`` of the per-modality logits reach the
:func:`jaxmm.transforms.ogm_ge` transformation, which slows the dominant
modality's encoder by ``1 − tanh(α·ρ)`` and adds the generalisation noise.

Per-modality logits (``scores``):

* ``"fusion"`` (official): the fused head's slices, ``W_m x_m + b/M`` for a
  linear concat head (:func:`jaxmm.methods._responses.fusion_slices`); no
  unimodal heads are built, and evaluation reports these slices as the
  unimodal logits (``acc/<modality>``), as the official code does.
* ``"heads"``: separate unimodal heads trained (weight ``lam_uni``) on
  stop-gradient encoder features, i.e. probes that do not train the encoders.

Modulated tensors (``tensors``): ``"kernels"`` (default: every weight tensor
of an encoder; on the official ResNet encoders these are exactly the conv
kernels the code modulates, on MLP encoders the linear kernels), ``"conv"``
(4-D tensors only, the code's literal rule: nothing on MLP encoders) or
``"all"`` (biases and BatchNorm parameters too, closer to BalanceBenchmark).
The noise of each run is drawn from that run's own step key.
"""
from __future__ import annotations

import jax

from jaxmm import _checks
from jaxmm.methods._responses import fusion_slices
from jaxmm.methods.base import GradientTransform, Method, ModelSpec, Terms, per_modality
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput
from jaxmm.monitors.scores import discrepancy_score
from jaxmm.transforms.ogm_ge import TENSORS
from jaxmm.transforms.ogm_ge import ogm_ge as ogm_ge_transform

SCORES = ("fusion", "heads")


@register("ogm_ge")
def ogm_ge(scores: str = "fusion", generalization: bool = True, tensors: str = "kernels",
           window: tuple[int, int] | None = (0, 50), ratio_offset: float = 0.0) -> Method:
    """OGM-GE: slow the dominant modality's encoder by its score ratio, plus gradient noise.

    Args:
      scores: where the per-modality logits come from: ``fusion`` (fused-head
        slices, official) or ``heads`` (detached unimodal heads).
      generalization: add the Gaussian noise (OGM-GE); ``False`` is plain OGM.
      tensors: modulated leaves of each encoder: ``kernels``, ``conv`` or ``all``.
      window: inclusive 0-indexed epochs of modulation (official ``(0, 50)``;
        BalanceBenchmark ``(10, 80)``); ``None``: always.
      ratio_offset: 0 is Eq. 10; 1 the continuous variant ``1 − tanh(α·relu(ρ − 1))``.

    Hyper-parameters (vmappable): ``alpha`` (0.8, the official CREMA-D value),
    ``lam_uni`` (weight of the probe heads' CE, ``scores="heads"`` only).
    """
    _checks.check_choice("scores", scores, SCORES, owner="ogm_ge")
    _checks.check_choice("tensors", tensors, TENSORS, owner="ogm_ge")
    _checks.check_positive("ratio_offset", ratio_offset, owner="ogm_ge", allow_zero=True)
    window = _checks.check_window("window", window, owner="ogm_ge")
    heads = scores == "heads"

    def unimodal_logits(model, features):
        if heads:
            return {m: model.unimodal(m, jax.lax.stop_gradient(features[m])) for m in model.modalities}
        return fusion_slices(model, features)

    def forward(model, inputs, ctx=None):
        features = model.encode(inputs)
        return ModelOutput(model.fuse(features), unimodal_logits(model, features), features)

    def terms(model, batch, ctx):
        out = forward(model, batch.inputs)
        t = {"ce": ctx.loss(out.logits, batch.label)}
        if heads:
            t["uni_ce"] = sum(ctx.loss(v, batch.label) for v in out.unimodal_logits.values())
        valid = batch.meta.get("valid")
        scores = {m: discrepancy_score(v, batch.label, valid) for m, v in out.unimodal_logits.items()}
        signals = {"scores": scores, "alpha": ctx.hparams["alpha"], "key": jax.random.fold_in(ctx.rng, 1)}
        return Terms(t, signals=signals, logs={f"score/{m}": s for m, s in scores.items()})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, **({"uni_ce": ctx.hparams["lam_uni"]} if heads else {})},
        hparams={"alpha": 0.8, **({"lam_uni": 1.0} if heads else {})},
        model=ModelSpec(fuse=True, unimodal_heads=heads, pieces=("encode", "fuse") + (("unimodal",) if heads else ())),
        forward=forward,
        transform=GradientTransform(
            lambda modalities, labels: ogm_ge_transform(
                modalities, labels=labels, generalization=generalization, tensors=tensors, window=window,
                ratio_offset=ratio_offset),
            metrics=lambda state, modalities: per_modality("coef", state.coefficients, modalities)),
    )
