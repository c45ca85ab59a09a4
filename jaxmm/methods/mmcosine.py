"""MMCosine (Xu et al., ICASSP 2023): normalised fusion with scaling.

The official concat head ``W = [W_1 | … | W_M]`` is used without bias, each modality's slice
with L2-normalised features and class vectors: ``out = Σ_m s · cos(z_m, w_{m,k})``. A slice
``W_m`` of a bias-free concat head is exactly a per-modality linear classifier, so here the
model's unimodal heads are the ``W_m`` (their biases are ignored) and no fused head is built.
The per-modality cosine logits are reported as the unimodal logits (per-modality accuracy).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.losses.mmcosine import cosine_logits
from jaxmm.methods.base import Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput


def head_kernel(model, modality: str, width: int) -> jax.Array:
    """The ``[D, K]`` weight matrix of a modality's affine unimodal head, bias removed.

    Read through ``model.unimodal`` on the basis vectors (``h(e_i) − h(0)``), so any head
    layout works; the head must be one affine layer (checked by its parameter count).

    Raises:
      ValueError: the head has more parameters than one ``D → K`` affine layer.
    """
    zero = jnp.zeros((1, width))
    offset = model.unimodal(modality, zero)
    num_outputs = offset.shape[-1]
    size = sum(x.size for x in jax.tree.leaves(nnx.state(model.unimodal_heads[modality], nnx.Param)))
    if size not in (width * num_outputs, width * num_outputs + num_outputs):
        raise ValueError(
            f"mmcosine uses each unimodal head as the class-weight matrix W_m, so the head of "
            f"{modality!r} must be one Linear({width}, {num_outputs}) layer, but it has {size} "
            "parameters; build the model without hidden layers in the unimodal heads "
            "(e.g. MLPModelConfig(unimodal_hidden=())).")
    return model.unimodal(modality, jnp.eye(width)) - offset


def cosine_forward(model, inputs, scale) -> ModelOutput:
    """Per-modality scaled cosine logits and their sum (the fused logits)."""
    features = model.encode(inputs)
    uni = {m: cosine_logits(z, head_kernel(model, m, z.shape[-1]), scale=scale) for m, z in features.items()}
    return ModelOutput(logits=sum(uni.values()), unimodal_logits=uni, features=features)


@register("mmcosine")
def mmcosine(eval_scale: float = 10.0) -> Method:
    """MMCosine: fused logits ``Σ_m s·cos(z_m, w_{m,k})`` from normalised features and weights.

    Args:
      eval_scale: ``s`` used by the evaluation pass. Only the ranking of the fused
        logits matters there, so it need not follow the trained ``scale``; it sets the
        unimodal logits' temperature in the outputs.

    Hyper-parameters (vmappable): ``scale`` (``s``: official 10, BalanceBenchmark 15,
    MCR's AVE re-run 1). The official optional NCE term (``λ_nce = 0`` by default) is not
    implemented.
    """
    if eval_scale <= 0:
        raise ValueError(f"eval_scale must be positive, got {eval_scale}")

    def terms(model, batch, ctx):
        out = cosine_forward(model, batch.inputs, ctx.hparams["scale"])
        return Terms({"ce": ctx.loss(out.logits, batch.label)})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        hparams={"scale": 10.0},
        model=ModelSpec(fuse=False, unimodal_heads=True, pieces=("encode", "unimodal")),
        forward=lambda model, inputs, ctx: cosine_forward(model, inputs, eval_scale),
    )
