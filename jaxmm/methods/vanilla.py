"""Baselines without regularisation: joint fusion, one modality alone, independent ensembles."""
from __future__ import annotations

import jax.numpy as jnp

from jaxmm.losses import classification_loss
from jaxmm.methods.base import Method, ModelSpec, average_softmax, unimodal_ce
from jaxmm.methods.registry import register


@register("vanilla")
def vanilla(unimodal_heads: bool = True) -> Method:
    """Joint fusion trained with CE on the fused head (+ λ_uni · unimodal-head CE)."""

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        t = {"ce": classification_loss(out.logits, batch.label)}
        if unimodal_heads:
            t["uni_ce"] = unimodal_ce(out, batch.label)
        return t, {}

    return Method(
        name="vanilla", summary=vanilla.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 0.05 if unimodal_heads else 0.0},
        model=ModelSpec(fuse=True, unimodal_heads=unimodal_heads),
        options={"unimodal_heads": unimodal_heads},
    )


@register("unimodal")
def unimodal(modality: str = "") -> Method:
    """One modality alone: its encoder and head trained with CE (``modality`` picks it)."""
    if not modality:
        raise ValueError("method 'unimodal' needs the option modality=<name>, e.g. --set method.modality=x0")

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        return {"ce": classification_loss(out.unimodal_logits[modality], batch.label)}, {}

    return Method(
        name="unimodal", summary=unimodal.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True, modalities=(modality,)),
        predict=lambda out: out.unimodal_logits[modality],
        options={"modality": modality},
    )


@register("ensemble")
def ensemble() -> Method:
    """Independent unimodal models; inference averages their softmax outputs."""

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        return {"uni_ce": unimodal_ce(out, batch.label)}, {}

    return Method(
        name="ensemble", summary=ensemble.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"uni_ce": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True),
        predict=average_softmax,
    )


def anneal(epoch, anneal_epochs: int):
    """Linear warm-up factor ``min(1, (epoch + 1) / anneal_epochs)`` (1 when ``anneal_epochs`` is 0)."""
    if anneal_epochs <= 0:
        return 1.0
    return jnp.minimum(1.0, (epoch + 1) / anneal_epochs)
