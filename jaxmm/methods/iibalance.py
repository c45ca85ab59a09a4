"""IIBalance (ICME 2026): intrinsic information budgets, budget-gap-controlled prototype alignment,
probabilistic gated fusion.

What follows the paper (only its abstract and a digest could be read):

* each modality's intrinsic information budget is estimated **offline, before multimodal
  training, from unimodal models, and then fixed**; it is a dataset-level prior;
* the highest-budget modality is the anchor;
* EMA-maintained class prototypes and a prototype contrastive loss correct a weaker modality
  only while it falls below its budgeted potential, with a linear schedule;
* at inference a probabilistic gate combines the budgets with per-sample uncertainty to fuse
  the unimodal predictions.

What is our reading (every item [INF]):

* the offline estimate is a warm-up phase of ``warmup_epochs`` epochs in which only the unimodal
  CE trains (each encoder with its own head: exactly ``M`` separate unimodal models); at its
  end the ``epoch_end`` hook computes the budgets from the heads' validation predictions
  (``Î_m = max(0, H(Y) − CE_val,m)``, or the accuracy ratio) and fixes them. Budgets computed
  elsewhere can be passed as the ``budgets`` option instead (no warm-up);
* the realised potential ``π_m`` is an EMA over batches of the unimodal heads' mean true-class
  probability; the gap is ``Δ_m = max(0, (b_m/b_a)·π_a − π_m)``
  (:func:`jaxmm.losses.prototype.budget_gap`);
* prototypes are per-batch EMAs (momentum ``momentum``) of each class's mean L2-normalised
  encoder feature, initialised from the first batch; each weaker modality's features are pulled
  to the *anchor's* prototypes by ``Δ_m · CE(softmax(⟨ẑ_m, c_a⟩/τ), y)``
  (:func:`jaxmm.losses.prototype.relative_alignment_loss`), so all modalities need the same
  feature width;
* ``λ(t)`` ramps linearly from 0 to ``lam`` over the first ``ramp_fraction`` of the epochs after
  the warm-up;
* the gate is ``w_m ∝ b_m · exp(−κ u_m) · softplus(g(u_m))`` with ``u_m`` the normalised entropy
  of the unimodal prediction and ``g`` a small MLP shared by the modalities
  (:func:`jaxmm.monitors.budgets.gate_weights`); the prediction is ``log Σ_m w_m p_m``, trained
  with CE after the warm-up together with ``Σ_m CE_m`` and the alignment.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_mean
from jaxmm.losses import l2_normalize
from jaxmm.losses.ce import as_categorical, true_class_probability
from jaxmm.losses.mixture import gated_log_probs
from jaxmm.losses.prototype import (
    budget_gap, class_means, class_sums, ema_update, relative_alignment_loss)
from jaxmm.methods._responses import eval_view
from jaxmm.methods.base import EpochHook, Method, ModelSpec, Terms, unimodal_loss, valid_of
from jaxmm.methods.registry import register
from jaxmm.models.mlp import MLP
from jaxmm.models.multimodal import ModelOutput
from jaxmm.monitors.budgets import (
    BUDGET_METHODS, anchor_modality, estimate_budgets, gate_weights, normalized_uncertainty)


def gated_prediction(model, unimodal_logits: dict, budgets: jax.Array, kappa):
    """The gated mixture of the unimodal predictions and its weights.

    Args:
      model: the model (its ``extras["iib_gate"]`` is the evidence MLP ``u_m -> g_m``).
      unimodal_logits: modality -> ``[B, K]`` (``K = 1``: a binary logit).
      budgets: ``[M]`` budgets.
      kappa: uncertainty penalty ``κ``.

    Returns:
      ``(logits, weights [B, M])``: ``log Σ_m w_m p_m`` as ``[B, K]`` log-probabilities, or as a
      single logit ``log p₁ − log p₀`` for binary heads.
    """
    logits = [as_categorical(unimodal_logits[m]) for m in model.modalities]
    u = jnp.stack([normalized_uncertainty(l) for l in logits], axis=1)  # [B, M]
    evidence = model.extras["iib_gate"](u[..., None])[..., 0]
    weights = gate_weights(budgets, u, evidence=evidence, kappa=kappa)
    log_p = gated_log_probs(logits, weights)
    binary = unimodal_logits[model.modalities[0]].shape[-1] == 1
    return (log_p[:, 1:] - log_p[:, :1] if binary else log_p), weights


def _normalized_features(out: ModelOutput, modalities) -> jax.Array:
    return jnp.stack([l2_normalize(out.features[m]) for m in modalities])  # [M, B, D]


@register("iibalance")
def iibalance(budgets: tuple = (), warmup_epochs: int = 5, budget_method: str = "information",
              momentum: float = 0.9, temperature: float = 0.1, ramp_fraction: float = 0.2,
              kappa: float = 1.0, gate_hidden: int = 16) -> Method:
    """IIBalance: offline information budgets, gap-controlled prototype alignment, budget-prior gate.

    Args:
      budgets: fixed budgets, one per modality in the model's order (e.g. from
        :func:`jaxmm.monitors.budgets.estimate_budgets` on separately trained unimodal models);
        empty: estimate them in a warm-up phase.
      warmup_epochs: epochs of unimodal-only training before the budgets are fixed (must be 0
        when ``budgets`` is given).
      budget_method: ``"information"`` (``H(Y) − CE_val``) or ``"accuracy"`` [INF].
      momentum: EMA momentum of the prototypes and potentials (0.9) [INF].
      temperature: prototype-logit temperature ``τ_p`` (0.1) [INF].
      ramp_fraction: share of the post-warm-up epochs over which ``λ`` ramps up (0.2) [INF].
      kappa: the gate's uncertainty penalty ``κ`` (1) [INF]; static, as the evaluation pass
        needs it.
      gate_hidden: hidden width of the gate's evidence MLP.

    Hyper-parameters (vmappable): ``lam`` (λ_max, 1), ``lam_uni`` (weight of ``Σ_m CE_m``, 1).
    """
    check_choice("budget_method", budget_method, BUDGET_METHODS, owner="iibalance")
    fixed = tuple(float(b) for b in budgets)
    if fixed and (warmup_epochs != 0 or min(fixed) < 0 or sum(fixed) <= 0):
        raise ValueError(f"budgets={fixed} must be non-negative with a positive sum, and then "
                         f"warmup_epochs must be 0 (got {warmup_epochs}): the budgets are fixed.")
    if not fixed and warmup_epochs < 1:
        raise ValueError("iibalance needs warmup_epochs >= 1 to estimate the budgets, or the "
                         "budgets option.")
    if not 0.0 <= momentum < 1.0 or not 0.0 < ramp_fraction <= 1.0 or temperature <= 0 or kappa < 0:
        raise ValueError(f"need 0 <= momentum < 1, 0 < ramp_fraction <= 1, temperature > 0 and "
                         f"kappa >= 0; got {momentum}, {ramp_fraction}, {temperature}, {kappa}.")

    def init_state(model, batch):
        mods = model.modalities
        if fixed and len(fixed) != len(mods):
            raise ValueError(f"budgets has {len(fixed)} values but the model has modalities {mods}.")
        out = eval_view(model)(batch.inputs)
        if len({out.features[m].shape[-1] for m in mods}) != 1:
            raise ValueError("iibalance aligns every modality to the anchor's prototypes, so the "
                             "encoders must output features of one width; got "
                             f"{ {m: out.features[m].shape[-1] for m in mods} }.")
        k = max(out.unimodal_logits[mods[0]].shape[-1], 2)
        z = _normalized_features(out, mods)
        protos = jnp.stack([class_means(*class_sums(f, batch.label, k, where=batch.meta.get("valid")))
                            for f in z])
        b = jnp.asarray(fixed, jnp.float32) if fixed else jnp.full((len(mods),), 1.0 / len(mods))
        return {"budgets": b / jnp.sum(b), "potentials": jnp.zeros((len(mods),)), "prototypes": protos,
                "ramp": jnp.zeros(())}

    def terms(model, batch, ctx):
        ms, mods = ctx.state, model.modalities
        out = model(batch.inputs)
        valid = valid_of(batch)
        # Potentials and prototypes: EMAs over (global) batches (gradient-free statistics).
        pi = jnp.stack([batch_mean(true_class_probability(out.unimodal_logits[m], batch.label), valid)
                        for m in mods])
        potentials = jax.lax.stop_gradient(ema_update(ms["potentials"], pi, momentum))
        z = _normalized_features(out, mods)
        k = ms["prototypes"].shape[1]

        def update(old, f):  # one modality's prototypes; classes absent from the batch keep theirs
            sums, counts = class_sums(f, batch.label, k, where=valid > 0)
            return ema_update(old, class_means(sums, counts, fallback=old), momentum, mask=counts > 0)

        prototypes = jax.lax.stop_gradient(jax.vmap(update)(ms["prototypes"], z))
        anchor = anchor_modality(ms["budgets"])
        gap = budget_gap(potentials, ms["budgets"], anchor)
        align = sum(relative_alignment_loss(out.features[m], prototypes[anchor], batch.label, gap[j],
                                            temperature=temperature) for j, m in enumerate(mods))
        fused, weights = gated_prediction(model, out.unimodal_logits, ms["budgets"], kappa)
        t = {"ce": ctx.loss(fused, batch.label), "uni_ce": unimodal_loss(out, batch.label, ctx), "pra": align}
        logs = {**{f"gap/{m}": gap[j] for j, m in enumerate(mods)},
                **{f"gate/{m}": batch_mean(weights[:, j]) for j, m in enumerate(mods)}}
        return Terms(t, state={**ms, "potentials": potentials, "prototypes": prototypes}, logs=logs)

    def term_weights(ctx):
        multimodal = (ctx.epoch >= (0 if fixed else warmup_epochs)).astype(jnp.float32)
        return {"ce": multimodal, "uni_ce": ctx.hparams["lam_uni"],
                "pra": multimodal * ctx.hparams["lam"] * ctx.state["ramp"]}

    def forward(model, inputs, ctx):
        out = model(inputs)
        fused, _ = gated_prediction(model, out.unimodal_logits, ctx.state["budgets"], kappa)
        return out._replace(logits=fused)

    def estimated(epoch):
        return not fixed and epoch + 1 == warmup_epochs

    def update_budgets(run, context):
        ms = dict(run.state)
        start = 0 if fixed else warmup_epochs
        if estimated(context.epoch):
            val = context.outputs["val"]
            ms["budgets"] = estimate_budgets([val.unimodal_logits[m] for m in val.unimodal_logits],
                                             context.labels["val"], method=budget_method).astype(ms["budgets"].dtype)
        ramp_epochs = max(1, round(ramp_fraction * (context.num_epochs - start)))
        ramp = min(1.0, max(0.0, (context.epoch + 1 - start) / ramp_epochs))
        ms["ramp"] = jnp.full_like(ms["ramp"], ramp)
        return run._replace(state=ms)

    return Method(
        terms=terms, term_weights=term_weights, hparams={"lam": 1.0, "lam_uni": 1.0},
        model=ModelSpec(fuse=False, unimodal_heads=True,
                        extras=lambda model, num_outputs, rngs: {"iib_gate": MLP([1, gate_hidden, 1], rngs=rngs)}),
        forward=forward, init_state=init_state,
        epoch_end=EpochHook(update_budgets, reads=lambda epoch, num_epochs: ("val",) if estimated(epoch) else ()),
    )
