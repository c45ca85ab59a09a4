"""ReconBoost (Hua et al., ICML 2024): alternating boosting of unimodal learners.

The learners are ``φ_m`` = encoder ``m`` + its unimodal head; the ensemble is
``F = η Σ_m φ_m`` with a learnable boost rate ``η`` (an extra module). Training is a cycle of
stages: a *modality phase* of ``epochs_per_stage`` epochs trains the active learner ``φ_m``
(``m`` = stage mod M) with the reconcilement loss against the others' ensemble (gradient-stopped,
so nothing else receives a gradient), then *global rectification* trains every learner and ``η``
for ``correct_epochs`` epochs on ``CE(F, y)``. As in the official code, the optimiser's moments
restart at every phase boundary (the code creates a fresh SGD per phase) while its learning-rate
schedule keeps counting (the code's decay runs on stages, across phases); the trainer's reset
(:func:`jaxmm.train.optim.fresh_optimizer_state`) does exactly that. A learner outside its phase
does not move — up to weight decay, which the trainer's optimiser still applies to every
parameter (the code's per-phase optimiser only holds the active learner).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm._checks import check_choice
from jaxmm.losses.ce import as_categorical
from jaxmm.losses.reconboost import FORMS, ensemble_logits, ga_loss, reconcilement_loss, rectification_loss
from jaxmm.methods.base import EpochHook, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.models.multimodal import ModelOutput

GA_MODES = ("detached", "trained", "off")


class BoostRate(nnx.Module):
    """The learnable ensemble weight ``η`` (a scalar parameter, 1.0 at start)."""

    def __init__(self):
        self.value = nnx.Param(jnp.ones(()))


def phase(epoch, epochs_per_stage: int, correct_epochs: int):
    """``(stage, boosting)`` of an epoch: its stage index and whether it is in the modality phase."""
    cycle = epochs_per_stage + correct_epochs
    return epoch // cycle, epoch % cycle < epochs_per_stage


def ensemble_forward(model, inputs, ctx=None) -> ModelOutput:
    """Inference per the paper: ``F(x) = η Σ_m φ_m(x_m)`` as the fused logits."""
    out = model(inputs)
    eta = model.extras["boost_rate"].value
    return out._replace(logits=ensemble_logits(list(out.unimodal_logits.values()), eta))


def _previous_logits(model, snapshot, inputs) -> dict[str, jax.Array]:
    """Each learner's logits under the parameters saved at the start of its phase."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    previous = nnx.merge(graphdef, snapshot, rest, copy=True)
    return {m: as_categorical(v) for m, v in previous(inputs).unimodal_logits.items()}


@register("reconboost")
def reconboost(form: str = "code", ga: str = "detached", epochs_per_stage: int = 4, correct_epochs: int = 4,
               reset_optimizer: bool = True) -> Method:
    """ReconBoost: alternating per-modality boosting with KL reconcilement and global rectification.

    Args:
      form: reconcilement loss, ``code`` (official: label-masked boosting loss
        ``−(w1 − w2·q_y) log p_y / K``) or ``paper`` (``CE(φ_m, y) − λ·KL(q ‖ p)``).
      ga: the GA term ``α·MSE(softmax φ_m, softmax φ_m^prev)`` from the second stage on:
        ``detached`` (official quirk: both inputs detached, logged but no gradient),
        ``trained`` (the gradient reaches ``φ_m``) or ``off`` (not computed: saves the
        previous learners' forward pass and their parameter snapshot).
      epochs_per_stage: epochs of each modality phase (CREMA-D 4; BalanceBenchmark 1).
      correct_epochs: epochs of global rectification after each modality phase (4).
      reset_optimizer: restart the optimiser's moments at every phase boundary (official: a fresh
        optimiser per phase; the learning-rate schedule keeps counting).

    Hyper-parameters (vmappable): ``w1`` (5.0; AVE 4.0), ``w2`` (1.0), ``lam`` (paper form's
    KL weight), ``alpha`` (GA weight, 0.5).
    """
    check_choice("form", form, FORMS, owner="reconboost")
    check_choice("ga", ga, GA_MODES, owner="reconboost")
    if epochs_per_stage < 1 or correct_epochs < 0:
        raise ValueError(f"need epochs_per_stage >= 1 and correct_epochs >= 0, got {epochs_per_stage} "
                         f"and {correct_epochs}")

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        eta = model.extras["boost_rate"].value
        logits = {m: as_categorical(v) for m, v in out.unimodal_logits.items()}
        names = list(logits)
        stage, _ = phase(ctx.epoch, epochs_per_stage, correct_epochs)
        active = jax.nn.one_hot(stage % len(names), len(names))
        hp = ctx.hparams
        previous = _previous_logits(model, ctx.state["previous"], batch.inputs) if ga != "off" else None
        boost, ga_term = 0.0, 0.0
        for i, m in enumerate(names):
            others = ensemble_logits([logits[k] for k in names if k != m], eta)
            boost = boost + active[i] * reconcilement_loss(logits[m], others, batch.label, form=form,
                                                           w1=hp["w1"], w2=hp["w2"], lam=hp["lam"])
            if previous is not None:
                ga_term = ga_term + active[i] * ga_loss(logits[m], previous[m], detach=ga == "detached")
        t = {"boost": boost, "rectify": rectification_loss(list(logits.values()), batch.label, boost_rate=eta)}
        if previous is not None:
            t["ga"] = ga_term
        return Terms(t, logs={"boost_rate": eta, "active_modality": stage % len(names)})

    def term_weights(ctx):
        stage, boosting = phase(ctx.epoch, epochs_per_stage, correct_epochs)
        boosting = jnp.asarray(boosting, jnp.float32)
        return {"boost": boosting, "rectify": 1.0 - boosting, "ga": ctx.hparams["alpha"] * boosting * (stage > 0)}

    def position(epoch):
        return (epoch + 1) % (epochs_per_stage + correct_epochs)

    def snapshot(run, context):
        if position(context.epoch) == 0 and ga != "off":
            return run._replace(state={"previous": jax.tree.map(jnp.copy, run.params)})
        return run

    def init_state(model, batch):
        return {"previous": nnx.state(model, nnx.Param)} if ga != "off" else {}

    return Method(
        terms=terms, term_weights=term_weights,
        hparams={"w1": 5.0, "w2": 1.0, "lam": 1.0, "alpha": 0.5},
        model=ModelSpec(fuse=False, unimodal_heads=True,
                        extras=lambda model, num_outputs, rngs: {"boost_rate": BoostRate()}),
        forward=ensemble_forward,
        init_state=init_state,
        epoch_end=EpochHook(snapshot, reset_optimizer=lambda epoch: reset_optimizer and position(epoch) in (
            0, epochs_per_stage)),
    )
