"""IIBalance: offline intrinsic-information budgets and the probabilistic fusion gate.

What follows the paper (arXiv 2603.17347; only the abstract and a digest could be read):

* each modality has an *intrinsic information budget*, estimated offline from the task and fixed,
  which acts as a global, dataset-level prior over modality contributions;
* the highest-budget modality is the *anchor*;
* at inference a probabilistic gate fuses the unimodal predictions with weights that combine the
  global budgets with per-sample uncertainty.

What is our reading (every item [INF]):

* the estimator: ``Î_m = max(0, H(Y) − CE_m)`` in nats, a variational lower bound on
  ``I(X_m; Y)`` from a unimodal model's held-out predictions (:func:`information_budgets`), or
  the accuracy ratio (:func:`accuracy_budgets`); budgets are ``b_m = Î_m / Σ_k Î_k``;
* the uncertainty ``u_m(x) = H(p_m(·|x)) / log K`` (:func:`normalized_uncertainty`);
* the gate ``w_m(x) ∝ b_m · exp(−κ u_m(x)) · softplus(g_m(x))`` with ``g`` an optional learned
  evidence (:func:`gate_weights`), and the fused prediction ``Σ_m w_m p_m``
  (:func:`jaxmm.losses.mixture.gated_log_probs`): the prior ``b_m`` times a likelihood that
  penalises uncertainty.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.losses.ce import classification_loss
from jaxmm.losses.kl import categorical_kl_to_uniform
from jaxmm.losses.mixture import check_multiclass as _check_multiclass

BUDGET_METHODS = ("information", "accuracy")


def label_entropy(labels: jax.Array, num_classes: int) -> jax.Array:
    """Plug-in entropy ``H(Y)`` in nats of integer labels ``[N]``."""
    p = jnp.mean(jax.nn.one_hot(labels, num_classes), axis=0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def information_budgets(unimodal_logits: Sequence[jax.Array], labels: jax.Array) -> jax.Array:
    """Budgets from task-relevant information ``Î_m = max(0, H(Y) − CE_m)`` [INF].

    Args:
      unimodal_logits: one ``[N, K]`` (or ``[N, 1]`` binary) array per modality: held-out
        predictions of a unimodal model (same encoder, linear head) trained beforehand.
      labels: ``[N]`` class ids.

    Returns:
      ``[M]`` budgets summing to 1 (uniform if no modality carries information).
    """
    _check_predictions(unimodal_logits, labels)
    k = max(unimodal_logits[0].shape[-1], 2)
    h_y = label_entropy(labels, k)
    info = jnp.stack([jnp.maximum(h_y - jnp.mean(classification_loss(l, labels)), 0.0)
                      for l in unimodal_logits])
    return _normalize(info)


def accuracy_budgets(unimodal_logits: Sequence[jax.Array], labels: jax.Array) -> jax.Array:
    """Budgets proportional to the unimodal accuracies [INF: the alternative estimator].

    Args:
      unimodal_logits: one ``[N, K]`` (or ``[N, 1]`` binary) array per modality.
      labels: ``[N]`` class ids.

    Returns:
      ``[M]`` budgets ``acc_m / Σ_k acc_k`` (uniform if every accuracy is 0).
    """
    _check_predictions(unimodal_logits, labels)
    predicted = [(l[:, 0] > 0).astype(labels.dtype) if l.shape[-1] == 1 else jnp.argmax(l, -1)
                 for l in unimodal_logits]
    return _normalize(jnp.stack([jnp.mean(p == labels) for p in predicted]))


def estimate_budgets(unimodal_logits: Sequence[jax.Array], labels: jax.Array, *,
                     method: str = "information") -> jax.Array:
    """Offline budget estimate: ``"information"`` (default) or ``"accuracy"`` (see above)."""
    check_choice("method", method, BUDGET_METHODS)
    estimator = information_budgets if method == "information" else accuracy_budgets
    return estimator(unimodal_logits, labels)


def anchor_modality(budgets: jax.Array) -> jax.Array:
    """Index of the anchor: the highest-budget modality (first one on ties) [PAPER]."""
    return jnp.argmax(budgets)


def normalized_uncertainty(logits: jax.Array) -> jax.Array:
    """``u(x) = H(softmax(logits)) / log K ∈ [0, 1]`` per example [INF].

    Args:
      logits: ``[B, K]`` with ``K >= 2``.

    Returns:
      ``[B]``; 0 for a one-hot prediction, 1 for the uniform one.
    """
    _check_multiclass(logits)
    log_k = jnp.log(logits.shape[-1])
    return 1.0 - categorical_kl_to_uniform(logits) / log_k   # H = log K − KL(p ‖ U)


def gate_weights(budgets: jax.Array, uncertainty: jax.Array, *, evidence=None,
                 kappa: float = 1.0) -> jax.Array:
    """Per-sample fusion weights ``w_m ∝ b_m · exp(−κ u_m) · softplus(g_m)`` [INF].

    Args:
      budgets: ``[M]`` budgets (the global prior).
      uncertainty: ``[B, M]`` per-sample uncertainties (:func:`normalized_uncertainty`).
      evidence: optional ``[B, M]`` raw outputs ``g`` of a gating network; ``None`` drops the
        ``softplus(g)`` factor (a parameter-free gate).
      kappa: strength ``κ`` of the uncertainty penalty.

    Returns:
      ``[B, M]`` weights, non-negative, summing to 1 over modalities.
    """
    if uncertainty.ndim != 2 or uncertainty.shape[1:] != budgets.shape:
        raise ValueError(f"uncertainty {uncertainty.shape} must be [B, M] with M = "
                         f"{budgets.shape} budgets.")
    log_w = jnp.log(budgets)[None, :] - kappa * uncertainty
    if evidence is not None:
        if evidence.shape != uncertainty.shape:
            raise ValueError(f"evidence {evidence.shape} must match uncertainty "
                             f"{uncertainty.shape}.")
        log_w = log_w + jnp.log(jax.nn.softplus(evidence))
    return jax.nn.softmax(log_w, axis=-1)


def _normalize(values: jax.Array) -> jax.Array:
    total = jnp.sum(values)
    return jnp.where(total > 0, values / jnp.where(total > 0, total, 1.0), 1.0 / values.shape[0])


def _check_predictions(unimodal_logits: Sequence[jax.Array], labels: jax.Array) -> None:
    if not unimodal_logits:
        raise ValueError("pass one array of unimodal predictions per modality.")
    num_classes = unimodal_logits[0].shape[-1]
    for l in unimodal_logits:
        if l.ndim != 2 or l.shape[:1] != labels.shape or l.shape[-1] != num_classes:
            raise ValueError(f"every unimodal prediction must be [N, K] with N = {labels.shape} "
                             f"labels and the same K; got {[x.shape for x in unimodal_logits]}.")
