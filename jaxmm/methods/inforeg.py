"""InfoReg bound to the method interface (Huang et al., CVPR 2025).

Loss (official code): ``CE(out) + λ_uni Σ_m CE(out_m)`` with ``out_m`` the
fused head's slices (:func:`jaxmm.methods._responses.fusion_slices`,
``unimodal="slices"``, as the code's ``W_m x_m + b/2``) or separate unimodal
heads (``unimodal="heads"``). The discrepancy scores ``s_m = Σ_i p(out_m,i)[y_i]``
reach :func:`jaxmm.transforms.inforeg`, which adds ``β_m (θ − θ_epoch_start)`` to
the dominant modality's encoder gradient while its prime learning window is
open (Fisher-trace acquisition rate ``k_e > threshold``), with
``β = c_m · exp(tanh(s_dom − s_runner-up))``.

Paper vs code: the window is read from the dominant modality's own trace by
default (paper); ``monitored="audio"`` reads the audio encoder's trace for
everyone (code). The code's CREMA-D scales are ``scales={"audio": 0.95,
"visual": 0.1}``; the default here is 1 for every modality.
"""
from __future__ import annotations

from typing import Mapping

from jaxmm import _checks
from jaxmm.methods._responses import fusion_slices
from jaxmm.methods.base import GradientTransform, Method, ModelSpec, Terms, per_modality
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput
from jaxmm.monitors.scores import discrepancy_score
from jaxmm.transforms.inforeg import inforeg as inforeg_transform

UNIMODAL = ("slices", "heads")


@register("inforeg")
def inforeg(unimodal: str = "slices", scales: float | Mapping[str, float] = 1.0, threshold: float = 0.05,
            window: int = 10, monitored: str | None = None) -> Method:
    """InfoReg: pull the dominant encoder towards its epoch-start weights inside its prime learning window.

    Args:
      unimodal: per-modality logits: ``slices`` of the fused head (official) or unimodal ``heads``.
      scales: coefficient scale ``c_m`` (one float, or ``{modality: c_m}``).
      threshold: the window is open while the acquisition rate ``k_e > threshold`` (official 0.05).
      window: epochs compared by the acquisition rate (official 10).
      monitored: modality whose Fisher trace opens the window for all (code: ``audio``);
        ``None``: the dominant modality's own (paper).

    Hyper-parameters (vmappable): ``lam_uni`` (weight of the unimodal CE, official 1).
    """
    _checks.check_choice("unimodal", unimodal, UNIMODAL, owner="inforeg")
    for m, c in (scales.items() if isinstance(scales, Mapping) else [("all", scales)]):
        _checks.check_positive(f"scales[{m!r}]", c, owner="inforeg", allow_zero=True)
    _checks.check_positive("threshold", threshold, owner="inforeg", allow_zero=True)
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"inforeg: `window` must be an int >= 1, got {window!r}.")
    slices = unimodal == "slices"

    def forward(model, inputs, ctx=None):
        if not slices:
            return model(inputs)
        features = model.encode(inputs)
        return ModelOutput(model.fuse(features), fusion_slices(model, features), features)

    def terms(model, batch, ctx):
        out = forward(model, batch.inputs)
        t = {"ce": ctx.loss(out.logits, batch.label),
             "uni_ce": sum(ctx.loss(v, batch.label) for v in out.unimodal_logits.values())}
        valid = batch.meta.get("valid")
        scores = {m: discrepancy_score(v, batch.label, valid) for m, v in out.unimodal_logits.items()}
        return Terms(t, signals={"scores": scores}, logs={f"score/{m}": s for m, s in scores.items()})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=not slices, pieces=("encode", "fuse") if slices else ()),
        forward=forward,
        transform=GradientTransform(
            lambda modalities, labels: inforeg_transform(modalities, labels=labels, scales=scales,
                                                         threshold=threshold, window=window, monitored=monitored),
            metrics=lambda state, modalities: per_modality("beta", state.beta, modalities)),
    )
