"""AGM bound to the method interface (Li et al., ICCV 2023).

Every step: the fused pass in train mode, then evaluation-mode passes with the
inputs of absent modalities zeroed (gradients kept), for every proper subset of
the modalities; their Shapley values are the mono-modal responses ``o_m``
(``Σ_m o_m`` = the fused logits). The scores ``s_m`` (mean NLL of ``o_m``) and
their all-time running means give ``κ_m = exp(α·min(r̄_m − r_m, cap))``; the
running means are updated after κ is computed and are carried in the method
state (updated at every step, in and out of the modulation window).

``mode="logits"`` (official): the loss is ``CE(Σ_m o_m)`` with the gradient into
each ``o_m`` scaled by ``κ_m``. ``mode="groups"`` (BalanceBenchmark's form, without
its sign flip): plain fused CE, and the transformation multiplies modality
``m``'s encoder gradient by ``κ_m``. Outside the window κ = 1, plain CE
(``outside="plain"``, our reading of the window); with ``outside="hold"`` the last κ
used inside the window persists after it (1 before it opens), which is what the
official code does: its backward hooks keep their last scale. Both
modes apply the official clipping rule (global norm clipped to ``max_norm``
when a fused-head weight gradient element exceeds ``clip_threshold``).
Evaluation reports the responses ``o_m`` (eval mode) as the unimodal logits.
The number of masked passes is ``2^M − 2`` fused-head passes (encoders run
once each), so any number of modalities works but more than ~5 is costly.
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp

from jaxmm import _checks
from jaxmm.methods._responses import masked_input_logits
from jaxmm.methods.base import GradientTransform, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput
from jaxmm.monitors.cumulative_mean import init_cumulative_mean, update_cumulative_mean
from jaxmm.transforms.agm import agm as agm_transform
from jaxmm.transforms.agm import agm_coefficients, agm_scores, modulated_logits, shapley_responses

MODES = ("logits", "groups")


def responses(model, inputs, fused_logits):
    """Shapley mono-modal responses ``{modality: o_m}`` around the given fused logits."""
    mods = tuple(model.modalities)
    proper = [s for r in range(1, len(mods)) for s in itertools.combinations(mods, r)]
    return shapley_responses({mods: fused_logits, **masked_input_logits(model, inputs, proper)}, mods)


@register("agm")
def agm(mode: str = "logits", window: tuple[int, int] | None = (0, 19), outside: str = "plain",
        cap: float = 10.0, clip_threshold: float | None = 1.0, max_norm: float = 1.0) -> Method:
    """AGM: Shapley mono-modal responses, gradients rescaled towards the running score balance.

    Args:
      mode: ``logits`` (official: κ scales the gradient into each response) or
        ``groups`` (κ scales each encoder's gradient).
      window: inclusive 0-indexed epochs of modulation (official 1-indexed 0..20);
        ``None``: always.
      outside: κ outside the window: ``plain`` (1) or ``hold`` (the last κ
        used inside it, 1 before it opens; the official code's behaviour).
      cap: upper clamp of ``r̄ − r`` (official 10; BalanceBenchmark 7).
      clip_threshold: clip when a fused-head weight gradient element exceeds it
        (official 1); ``None`` disables clipping.
      max_norm: the global norm clipped to (official 1).

    Hyper-parameters (vmappable): ``alpha`` (1.0, the official config).
    """
    _checks.check_choice("mode", mode, MODES, owner="agm")
    _checks.check_choice("outside", outside, ("plain", "hold"), owner="agm")
    hold = outside == "hold"
    _checks.check_positive("cap", cap, owner="agm")
    _checks.check_positive("max_norm", max_norm, owner="agm")
    if clip_threshold is not None:
        _checks.check_positive("clip_threshold", clip_threshold, owner="agm")
    window = _checks.check_window("window", window, owner="agm")

    def forward(model, inputs, ctx=None):
        out = model(inputs)
        return ModelOutput(out.logits, responses(model, inputs, out.logits), out.features)

    def terms(model, batch, ctx):
        out = forward(model, batch.inputs)
        scores = agm_scores(out.unimodal_logits, batch.label, batch.meta.get("valid"))
        state = ctx.state
        kappa = agm_coefficients(scores, state["running"].mean, ctx.hparams["alpha"], cap)
        if window is not None:
            on = (ctx.epoch >= window[0]) & (ctx.epoch <= window[1])
            kappa = {m: jnp.where(on, k, state["kappa"][m] if hold else 1.0) for m, k in kappa.items()}
        logits = modulated_logits(out.unimodal_logits, kappa) if mode == "logits" else out.logits
        new_state = {"running": update_cumulative_mean(state["running"], scores), **({"kappa": kappa} if hold else {})}
        logs = {**{f"score/{m}": s for m, s in scores.items()}, **{f"kappa/{m}": k for m, k in kappa.items()}}
        return Terms({"ce": ctx.loss(logits, batch.label)}, state=new_state, signals={"coefficients": kappa},
                     logs=logs)

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        hparams={"alpha": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=False, pieces=("encode_one", "fuse")),
        forward=forward,
        init_state=lambda model, batch: {
            "running": init_cumulative_mean({m: 0.0 for m in model.modalities}),
            **({"kappa": {m: jnp.ones((), jnp.float32) for m in model.modalities}} if hold else {})},
        transform=GradientTransform(lambda modalities, labels: agm_transform(
            modalities, labels=labels, mode=mode, window=None, clip_threshold=clip_threshold, max_norm=max_norm)),
    )
