"""ReconBoost (Hua et al., ICML 2024) loss terms, per example.

From the official code ``huacong/ReconBoost`` (see the ReconBoost page of the documentation).
Stages alternate between modalities: in the *modality phase* the learner ``φ_m`` is trained with a
reconcilement loss against the ensemble of the other modalities' learners
(:func:`reconcilement_loss`, plus the optional :func:`ga_loss`); then *global rectification*
trains all learners and the boost rate ``η`` on the ensemble's CE (:func:`rectification_loss`).
The ensemble is ``F = η Σ_m φ_m`` (:func:`ensemble_logits`).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.losses.ce import softmax_cross_entropy
from jaxmm.losses.kl import categorical_kl

FORMS = ("code", "paper")


def ensemble_logits(unimodal_logits: Sequence[jax.Array], boost_rate=1.0) -> jax.Array:
    """``η Σ_m φ_m(x_m)``: the boosted ensemble (or, leaving ``φ_m`` out, ``Φ_{−m}``).

    Args:
      unimodal_logits: one ``[B, K]`` array per learner.
      boost_rate: ``η`` (a learnable scalar, 1.0 at start).

    Returns:
      ``[B, K]`` logits.
    """
    if not unimodal_logits or any(l.shape != unimodal_logits[0].shape for l in unimodal_logits):
        shapes = [l.shape for l in unimodal_logits]
        raise ValueError(f"pass [B, K] logits of one shape, got {shapes}.")
    return boost_rate * sum(unimodal_logits)


def reconcilement_loss(logits: jax.Array, others_logits: jax.Array, labels: jax.Array, *,
                       form: str = "code", w1: float = 5.0, w2: float = 1.0, lam: float = 1.0,
                       where=None) -> jax.Array:
    """Loss of the learner being boosted, reconciled with the other modalities' ensemble.

    ``others_logits`` (``Φ_{−m}``, see :func:`ensemble_logits`) is gradient-stopped in both forms.

    * ``"code"`` (official ``train.py``, the default): the label-masked boosting loss
      ``(1/K) Σ_c [−w1·y_c log p_c + w2·y_c·q_c log p_c] = −(w1 − w2·q_y) log p_y / K`` with
      ``p = softmax(logits)``, ``q = softmax(others_logits)``: a CE re-weighted down on examples
      the others already get right.
    * ``"paper"`` (pipeline figure): ``CE(φ_m, y) − λ·KL(q ‖ p)``.

    Args:
      logits: ``[B, K]`` logits of the learner ``φ_m``.
      others_logits: ``[B, K]`` logits ``Φ_{−m}`` of the other modalities' ensemble.
      labels: ``[B]`` class ids.
      form: ``"code"`` or ``"paper"``.
      w1: code weight of the CE part (CREMA-D 5.0, AVE 4.0).
      w2: code weight of the reconcilement part (1.0).
      lam: paper weight ``λ`` of the KL term.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``[B]`` per-example loss.
    """
    check_choice("form", form, FORMS)
    if logits.shape != others_logits.shape:
        raise ValueError(f"logits {logits.shape} and others_logits {others_logits.shape} must "
                         "match.")
    others_logits = jax.lax.stop_gradient(others_logits)
    ce = softmax_cross_entropy(logits, labels)
    if form == "code":
        q_y = jnp.exp(-softmax_cross_entropy(others_logits, labels))
        loss = (w1 - w2 * q_y) * ce / logits.shape[-1]
    else:
        loss = ce - lam * categorical_kl(others_logits, logits)
    return loss if where is None else jnp.where(where, loss, 0.0)


def ga_loss(logits: jax.Array, previous_logits: jax.Array, *, detach: bool = True) -> jax.Array:
    """The "GA" term ``MSE(softmax(φ_m), softmax(φ_m^{prev}))`` per example (mean over classes).

    The official code detaches *both* inputs, so the term is logged but contributes no gradient
    (BalanceBenchmark copies this). ``detach=True`` reproduces that quirk: the value is returned
    gradient-stopped. ``detach=False`` lets the gradient reach the current learner (the previous
    learner stays a constant), which is what the term is presumably meant to do.

    Args:
      logits: ``[B, K]`` current learner logits.
      previous_logits: ``[B, K]`` logits of this modality's previous learner.
      detach: reproduce the official no-gradient quirk.

    Returns:
      ``[B]`` per-example term; the code weights it by ``α = 0.5`` from the second stage on.
    """
    if logits.shape != previous_logits.shape:
        raise ValueError(f"logits {logits.shape} and previous_logits {previous_logits.shape} "
                         "must match.")
    p = jax.nn.softmax(logits, axis=-1)
    p_prev = jax.lax.stop_gradient(jax.nn.softmax(previous_logits, axis=-1))
    loss = jnp.mean((p - p_prev) ** 2, axis=-1)
    return jax.lax.stop_gradient(loss) if detach else loss


def rectification_loss(unimodal_logits: Sequence[jax.Array], labels: jax.Array, *,
                       boost_rate=1.0, where=None) -> jax.Array:
    """Global rectification: ``CE(η Σ_m φ_m(x_m), y)`` per example (all learners and ``η`` train).

    Args:
      unimodal_logits: one ``[B, K]`` array per learner.
      labels: ``[B]`` class ids.
      boost_rate: ``η``.
      where: optional ``[B]`` boolean mask.

    Returns:
      ``[B]`` per-example loss.
    """
    return softmax_cross_entropy(ensemble_logits(unimodal_logits, boost_rate), labels, where=where)
