"""MCR (Kontras et al., NeurIPS 2025): Multimodal Competition Regularizer.

``L = CE(fused) + λ_uni Σ_m CE(h_m) + λ · L_MIPD + λ_con · L_Con``:

* ``L_MIPD = −Σ_n D_n`` with ``D_n`` the JS divergence between the fused prediction with modality
  ``n``'s latent permuted across the batch and the clean fused prediction of the training pass;
  the game coupling (greedy / independent / collaborative) sets how each encoder treats the
  divergences caused by permuting the *other* modalities, by scaling the gradients inside one
  forward pass (:func:`jaxmm.losses.mcr.permutation_divergences`), so no per-term gradients are
  needed. As in the code, the latents are re-encoded in eval mode with gradients (``latents="eval"``).
* ``L_Con``: supervised NT-Xent between the modalities' training-pass features (τ = 0.5).

The CEB term (``lib``; 0 in the CREMA-D ResNet runs) is not implemented.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxmm.batch_reduce import batch_mean
from jaxmm.losses.ce import as_categorical
from jaxmm.losses.mcr import COUPLINGS, permutation_divergences, supervised_nt_xent
from jaxmm.methods._masking import pure
from jaxmm.methods._responses import eval_view
from jaxmm.methods.base import Method, ModelSpec, Terms, unimodal_loss, valid_of
from jaxmm.methods.registry import register

LATENTS = ("eval", "train")


@register("mcr")
def mcr(coupling: str = "greedy", num_permutations: int = 32, latents: str = "eval",
        contrastive: bool = True) -> Method:
    """MCR: batch-permuted latents (MIPD) with game coupling, plus supervised contrastive alignment.

    Args:
      coupling: ``greedy`` (k = −1, the CREMA-D runs), ``independent`` (0) or
        ``collaborative`` (+1), see :func:`jaxmm.losses.mcr.coupling_matrix`.
      num_permutations: batch permutations averaged per step (code ``num_samples`` 32).
      latents: ``eval`` (code: a second encoder pass in eval mode, with gradients, whose
        latents and fusion head the permutations use) or ``train`` (reuse the training pass:
        one encoder pass fewer; identical for models without dropout or batch norm).
      contrastive: add ``L_Con`` (needs encoders of one output width).

    Hyper-parameters (vmappable): ``lam`` (λ of MIPD; CREMA-D ResNet 0.1, AVE 0.01), ``lam_uni``
    (``multil`` 0.01), ``lam_con`` (``contr_coeff`` 1), ``tau`` (NT-Xent temperature 0.5).
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"unknown coupling {coupling!r}; choose one of {tuple(COUPLINGS)}")
    if latents not in LATENTS:
        raise ValueError(f"unknown latents {latents!r}; choose one of {LATENTS}")
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        where = valid_of(batch) > 0
        source = eval_view(model) if latents == "eval" else model
        z = source.encode(batch.inputs) if latents == "eval" else out.features
        head = pure(source, lambda mod, lat: as_categorical(mod.fuse(lat)))
        divergences = permutation_divergences(head, z, as_categorical(out.logits), ctx.rng, coupling=coupling,
                                              num_permutations=num_permutations)
        t = {"ce": ctx.loss(out.logits, batch.label), "uni_ce": unimodal_loss(out, batch.label, ctx),
             "mipd": jnp.where(where, -sum(divergences.values()), 0.0)}
        if contrastive:
            widths = {m: f.shape[-1] for m, f in out.features.items()}
            if len(set(widths.values())) > 1:
                raise ValueError(f"MCR's contrastive term compares the modalities' features, which need one width; "
                                 f"got {widths}. Give the encoders one output width or pass contrastive=False.")
            t["con"] = supervised_nt_xent(list(out.features.values()), batch.label, temperature=ctx.hparams["tau"],
                                          where=where)
        return Terms(t, logs={f"mipd/D_{m}": batch_mean(d, where=where) for m, d in divergences.items()})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"], "mipd": ctx.hparams["lam"],
                                  "con": ctx.hparams["lam_con"]},
        hparams={"lam": 0.1, "lam_uni": 0.01, "lam_con": 1.0, "tau": 0.5},
        model=ModelSpec(fuse=True, unimodal_heads=True, pieces=("encode", "fuse")),
    )
