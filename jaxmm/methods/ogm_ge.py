"""OGM-GE bound to the method interface (baselines.md §3; Peng et al., CVPR 2022).

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

from jaxmm.losses import classification_loss
from jaxmm.methods._responses import fusion_slices
from jaxmm.methods.base import Method, ModelSpec, per_modality
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput
from jaxmm.monitors.scores import discrepancy_score
from jaxmm.transforms import _common
from jaxmm.transforms.ogm_ge import TENSORS
from jaxmm.transforms.ogm_ge import ogm_ge as ogm_ge_transform

SCORES = ("fusion", "heads")


def score_args(aux: dict) -> dict:
    """``{modality: score}`` from the ``score/<modality>`` entries of a step's aux."""
    return {k.removeprefix("score/"): v for k, v in aux.items() if k.startswith("score/")}


def check_window(name: str, window):
    """A ``(first, last)`` epoch window as a tuple (lists from JSON/CLI accepted) or ``None``.

    Raises:
      ValueError: for a malformed window.
    """
    if window is None:
        return None
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise ValueError(f"{name}: `window` must be (first_epoch, last_epoch) or None, got {window!r}.")
    window = tuple(int(e) for e in window)
    _common.check_window(name, window)
    return window


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
    _common.check_choice("ogm_ge", "scores", scores, SCORES)
    _common.check_choice("ogm_ge", "tensors", tensors, TENSORS)
    _common.check_positive("ogm_ge", "ratio_offset", ratio_offset, allow_zero=True)
    window = check_window("ogm_ge", window)
    heads = scores == "heads"

    def unimodal_logits(model, features):
        if heads:
            return {m: model.unimodal(m, jax.lax.stop_gradient(features[m])) for m in model.modalities}
        return fusion_slices(model, features)

    def forward(model, inputs):
        features = model.encode(inputs)
        return ModelOutput(model.fuse(features), unimodal_logits(model, features), features)

    def terms(model, batch, ctx):
        out = forward(model, batch.inputs)
        t = {"ce": classification_loss(out.logits, batch.label)}
        if heads:
            t["uni_ce"] = sum(classification_loss(v, batch.label) for v in out.unimodal_logits.values())
        valid = batch.meta.get("valid")
        return t, {f"score/{m}": discrepancy_score(v, batch.label, valid) for m, v in out.unimodal_logits.items()}

    return Method(
        name="ogm_ge", summary=ogm_ge.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, **({"uni_ce": ctx.hparams["lam_uni"]} if heads else {})},
        hparams={"alpha": 0.8, **({"lam_uni": 1.0} if heads else {})},
        model=ModelSpec(fuse=True, unimodal_heads=heads),
        forward=forward,
        transform=lambda modalities, labels: ogm_ge_transform(
            modalities, labels=labels, generalization=generalization, tensors=tensors, window=window,
            ratio_offset=ratio_offset),
        extra_args=lambda ctx, aux: {"scores": score_args(aux), "alpha": ctx.hparams["alpha"],
                                     "key": jax.random.fold_in(ctx.rng, 1)},
        transform_metrics=lambda state, modalities: per_modality("coef", state.coefficients, modalities),
        options={"scores": scores, "generalization": generalization, "tensors": tensors, "window": window,
                 "ratio_offset": ratio_offset},
    )
