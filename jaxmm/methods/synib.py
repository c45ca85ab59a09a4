"""SynIB: penalise confident fused predictions under modality-wise corruption (Kontras et al.).

See the SynIB page of the documentation for the objective, the masks and the options.

``L = CE(f(x_1, x_2), y) + λ_uni Σ_m CE(h_m, y) + λ Σ_m w_m KL(f(x̃_m, x_¬m) ‖ r)``
with counterfactual passes vmapped over the corrupted modality.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.losses import kl_to_reference
from jaxmm.methods import _masking
from jaxmm.methods.base import Method, ModelSpec, Terms, unimodal_loss
from jaxmm.methods.registry import register

REFERENCES = ("uniform", "unimodal", "gaussian")
PIECES = ("encode", "encode_one", "fuse")


def anneal(epoch, anneal_epochs: int):
    """Linear warm-up factor ``min(1, (epoch + 1) / anneal_epochs)`` (1 when ``anneal_epochs`` is 0)."""
    if anneal_epochs <= 0:
        return 1.0
    return jnp.minimum(1.0, (epoch + 1) / anneal_epochs)


def _anchor_logits(unimodal_logits: dict, masked: str, anchor: str):
    """Reference prediction for SynIB-U: the complementary modalities' heads (paper H.5) or the masked one's (code)."""
    if anchor == "self":
        return jax.lax.stop_gradient(unimodal_logits[masked])
    others = [v for m, v in unimodal_logits.items() if m != masked]
    return jax.lax.stop_gradient(jnp.mean(jnp.stack(others), axis=0))


@register("synib")
def synib(mask: str = "random", reference: str = "uniform", fill: str = "noise", level: str = "input",
          anneal_epochs: int = 0, anchor: str = "complement", learned_target: str = "complement",
          learned_steps: int = 50, learned_lr: float = 3.0, learned_init_logit: float = -4.0,
          learned_final_lr_fraction: float = 1.0, learned_clip: float = 0.0, learned_tol: float = 0.0,
          ema_momentum: float = 0.99) -> Method:
    """SynIB: KL of counterfactual (one modality corrupted) fused predictions to a reference.

    Args:
      mask: ``random`` | ``learned`` | ``oracle``.
      reference: ``uniform`` (paper; Bern(½) for one logit), ``unimodal`` (SynIB-U
        anchor) or ``gaussian`` (real-data code: a learned log-variance head on the
        fused trunk, KL to N(0, I) of the logits).
      fill: ``noise`` | ``ema`` | ``shuffle`` replacement values.
      level: ``input`` or ``latent`` masking.
      anneal_epochs: λ ramps linearly over this many epochs (0: constant).
      anchor: for ``reference="unimodal"``: ``complement`` (paper: the unmasked
        modality's head) or ``self`` (code at 3f3d3b86: the masked modality's head).
      learned_target: corrupt the ``complement`` of the learned mask (paper) or the
        ``important`` set itself (real-data code).
      learned_*: inner-problem settings, see :class:`LearnedMaskConfig`.
      ema_momentum: momentum of the running statistics of ``fill="ema"``.

    Hyper-parameters (vmappable): ``lam`` (λ), ``lam_uni``, ``p`` (random-mask rate),
    ``lam_sp`` (learned-mask sparsity), ``l_pareto`` (weight of the first modality's
    branch relative to the others, the code's ``--l_pareto``).
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose one of {REFERENCES}")
    if anchor not in ("complement", "self"):
        raise ValueError(f"unknown anchor {anchor!r}; choose 'complement' or 'self'")
    cfg = _masking.masking_config(
        mask, fill, level, learned_target=learned_target, ema_momentum=ema_momentum, learned_steps=learned_steps,
        learned_lr=learned_lr, learned_init_logit=learned_init_logit,
        learned_final_lr_fraction=learned_final_lr_fraction, learned_clip=learned_clip, learned_tol=learned_tol)
    gaussian = reference == "gaussian"

    def terms(model, batch, ctx):
        out, cf, modalities, masking_state, rates = _masking.clean_and_counterfactual(model, batch, ctx, cfg, gaussian)
        branch_w = jnp.stack([ctx.hparams["l_pareto"]] + [1.0] * (len(modalities) - 1))
        kls = []
        for i, m in enumerate(modalities):
            if gaussian:
                logits, trunk = cf[0][i], cf[1][i]
                kls.append(kl_to_reference(logits, "gaussian", logvar=model.extras["logvar_head"](trunk)))
            else:
                ref = _anchor_logits(out.unimodal_logits, m, anchor) if reference == "unimodal" else None
                kls.append(kl_to_reference(cf[i], reference, reference_logits=ref))
        kl = jnp.einsum("m,mb->b", branch_w, jnp.stack(kls))
        t = {"ce": ctx.loss(out.logits, batch.label), "uni_ce": unimodal_loss(out, batch.label, ctx),
             "synib_kl": kl}
        return Terms(t, state={"masking": masking_state}, logs={f"mask_rate/{m}": r for m, r in rates.items()})

    def extras(model, num_outputs, rngs):
        return {"logvar_head": nnx.Linear(model.trunk_width, num_outputs, rngs=rngs)}

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"],
                                  "synib_kl": ctx.hparams["lam"] * anneal(ctx.epoch, anneal_epochs)},
        hparams={"lam": 10.0, "lam_uni": 0.05, "p": 0.4, "lam_sp": 0.03, "l_pareto": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=True, extras=extras if gaussian else None,
                        pieces=PIECES + (("trunk_width",) if gaussian else ())),
        init_state=lambda model, batch: {"masking": _masking.init_masking_state(model, batch, cfg)},
    )


@register("masking_control")
def masking_control(mask: str = "random", fill: str = "noise", level: str = "input",
                    learned_steps: int = 50, learned_lr: float = 3.0, learned_init_logit: float = -4.0,
                    learned_final_lr_fraction: float = 1.0, learned_clip: float = 0.0,
                    learned_tol: float = 0.0) -> Method:
    """Masking-only control (SynIB App. G): CE on the union of clean and masked copies, no KL."""
    cfg = _masking.masking_config(
        mask, fill, level, learned_steps=learned_steps, learned_lr=learned_lr, learned_init_logit=learned_init_logit,
        learned_final_lr_fraction=learned_final_lr_fraction, learned_clip=learned_clip, learned_tol=learned_tol)

    def terms(model, batch, ctx):
        out, cf, modalities, masking_state, _ = _masking.clean_and_counterfactual(model, batch, ctx, cfg)
        ces = jnp.stack([ctx.loss(out.logits, batch.label)]
                        + [ctx.loss(cf[i], batch.label) for i in range(len(modalities))])
        t = {"ce_union": jnp.mean(ces, axis=0), "uni_ce": unimodal_loss(out, batch.label, ctx)}
        return Terms(t, state={"masking": masking_state})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce_union": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 0.05, "p": 0.4, "lam_sp": 0.03},
        model=ModelSpec(fuse=True, unimodal_heads=True, pieces=PIECES, tasks=("classification", "regression")),
        init_state=lambda model, batch: {"masking": _masking.init_masking_state(model, batch, cfg)},
    )
