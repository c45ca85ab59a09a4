"""MMPareto bound to the method interface (Wei & Hu, ICML 2024).

Terms: the fused CE ``ce`` and one unimodal-head CE ``uni_ce/<m>`` per
modality, all with weight 1. The trainer computes their gradients from one
forward pass and a vmapped VJP (``per_term_grads``); on each encoder ``m`` the
:func:`jaxmm.transforms.mmpareto` transformation combines the two gradients that
reach it (``ce`` and ``uni_ce/<m>``): uniform weights when they agree
(cos > 0), the 2-vector min-norm weights otherwise, then per tensor
``γ · h · max(1, ‖g_sum‖ / ‖h‖)`` with ``h = 2 Σ w_t g_t``. Heads and fusion
keep the summed gradient. Works for any number of modalities (one pair of
competing terms per encoder).
"""
from __future__ import annotations

from collections import defaultdict

from jaxmm.methods.base import GradientTransform, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.transforms.mmpareto import mmpareto as mmpareto_transform


def term_names(modalities) -> list[str]:
    """The method's terms in the trainer's (sorted) order of ``term_grads``."""
    return sorted(["ce", *(f"uni_ce/{m}" for m in modalities)])


def group_terms(modalities) -> dict[str, tuple[int, int]]:
    """``{modality: (index of ce, index of uni_ce/<modality>)}`` into the stacked term gradients."""
    names = term_names(modalities)
    return {m: (names.index("ce"), names.index(f"uni_ce/{m}")) for m in modalities}


@register("mmpareto")
def mmpareto(conflict_check: bool = True) -> Method:
    """MMPareto: Pareto-integrated fused and unimodal gradients on each encoder, magnitude-rescaled.

    Args:
      conflict_check: uniform weights when the two gradients agree (official);
        ``False`` always uses the min-norm weights.

    Hyper-parameters (vmappable): ``gamma`` (γ, 1.5 official).
    """

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        t = {"ce": ctx.loss(out.logits, batch.label)}
        t.update({f"uni_ce/{m}": ctx.loss(v, batch.label) for m, v in out.unimodal_logits.items()})
        return Terms(t, signals={"gamma": ctx.hparams["gamma"]})

    return Method(
        terms=terms,
        term_weights=lambda ctx: defaultdict(lambda: 1.0),  # every term weighs 1, whatever the modalities
        hparams={"gamma": 1.5},
        model=ModelSpec(fuse=True, unimodal_heads=True, tasks=("classification", "regression")),
        transform=GradientTransform(
            lambda modalities, labels: mmpareto_transform(group_terms(modalities), labels=labels,
                                                          conflict_check=conflict_check),
            per_term_grads=True),
    )
