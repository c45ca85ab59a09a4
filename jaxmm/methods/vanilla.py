"""Baselines without regularisation: joint fusion, one modality alone, independent ensembles."""
from __future__ import annotations

from jaxmm.methods.base import Method, ModelSpec, Terms, average_prediction, unimodal_loss
from jaxmm.methods.registry import register

BOTH_TASKS = ("classification", "regression")


@register("vanilla")
def vanilla(unimodal_heads: bool = True) -> Method:
    """Joint fusion trained with the task loss on the fused head (+ λ_uni · unimodal-head losses)."""

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        t = {"ce": ctx.loss(out.logits, batch.label)}
        if unimodal_heads:
            t["uni_ce"] = unimodal_loss(out, batch.label, ctx)
        return Terms(t)

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 0.05 if unimodal_heads else 0.0},
        model=ModelSpec(fuse=True, unimodal_heads=unimodal_heads, tasks=BOTH_TASKS),
    )


@register("unimodal")
def unimodal(modality: str = "") -> Method:
    """One modality alone: its encoder and head trained with the task loss (``modality`` picks it)."""
    if not modality:
        raise ValueError("method 'unimodal' needs the option modality=<name>, e.g. --set method_options.modality=x0")

    def forward(model, inputs, ctx):
        out = model(inputs)
        return out._replace(logits=out.unimodal_logits[modality])

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        return Terms({"ce": ctx.loss(out.unimodal_logits[modality], batch.label)})

    return Method(
        terms=terms, term_weights=lambda ctx: {"ce": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True, modalities=(modality,), tasks=BOTH_TASKS),
        forward=forward,
    )


@register("ensemble")
def ensemble() -> Method:
    """Independent unimodal models; inference averages their probabilities (regression: their outputs)."""

    def terms(model, batch, ctx):
        return Terms({"uni_ce": unimodal_loss(model(batch.inputs), batch.label, ctx)})

    def forward(model, inputs, ctx):
        out = model(inputs)
        return out._replace(logits=average_prediction(out.unimodal_logits, ctx.task))

    return Method(
        terms=terms, term_weights=lambda ctx: {"uni_ce": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True, tasks=BOTH_TASKS),
        forward=forward,
    )

