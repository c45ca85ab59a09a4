"""Class prototypes and the prototype losses of PMR and IIBalance.

* Prototypes: per-class feature sums and means (:func:`class_sums`, :func:`class_means`) and the
  EMA update (:func:`ema_update`), as pure functions; prototype-distance logits
  (:func:`prototype_logits`).
* PMR (official ``main_Prototype_grad.py``): the prototypical CE of each
  modality, scaled by a coefficient read from the imbalance ratio of the prototype scores
  (:func:`pmr_coefficients`, :func:`pmr_loss`). The code's binary rule is the default; the paper's
  continuous coefficient and prototypical entropy regulariser are options whose exact form could
  not be verified ([U]; see :func:`pmr_coefficients`).
* IIBalance (our reading of the abstract, every item [INF]; see the IIBalance page of the
  documentation): budget-gap-controlled prototype relative
  alignment of the weaker modalities to the anchor's prototypes (:func:`budget_gap`,
  :func:`relative_alignment_loss`) and its linear ramp (:func:`alignment_ramp`).

Prototypes are treated as constants by the losses (gradients flow through the features only).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_sum, gather_rows
from jaxmm.losses._common import l2_normalize
from jaxmm.losses.ce import softmax_cross_entropy, true_class_probability
from jaxmm.losses.kl import categorical_kl_to_uniform
from jaxmm.metrics.clustering import squared_distances

METRICS = ("euclidean", "squared_euclidean", "dot", "cosine")
PMR_RULES = ("code", "continuous")


def class_sums(features: jax.Array, labels: jax.Array, num_classes: int, *, where=None
               ) -> tuple[jax.Array, jax.Array]:
    """Per-class sums and counts of features over the global batch, additive across batches.

    Inside a per-device train step the rows of every device are gathered first, so the sums are
    those of one device holding the whole batch.

    Args:
      features: ``[B, D]`` features of one modality.
      labels: ``[B]`` integer class ids in ``[0, num_classes)``.
      num_classes: number of classes ``C``.
      where: optional ``[B]`` boolean; excluded examples are not counted.

    Returns:
      ``(sums [C, D], counts [C])``.
    """
    _check_batch(features, labels)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
    if where is not None:
        onehot = onehot * jnp.asarray(where, features.dtype)[:, None]
    onehot, features = gather_rows(onehot), gather_rows(features)
    return onehot.T @ features, jnp.sum(onehot, axis=0)


def class_means(sums: jax.Array, counts: jax.Array, *, fallback=None) -> jax.Array:
    """Class means from :func:`class_sums`; a class never seen keeps ``fallback`` (default 0).

    Args:
      sums: ``[C, D]`` accumulated sums.
      counts: ``[C]`` accumulated counts.
      fallback: optional ``[C, D]`` rows for classes with count 0 (e.g. the previous prototypes).

    Returns:
      ``[C, D]`` prototypes.
    """
    seen = (counts > 0)[:, None]
    means = sums / jnp.where(seen, counts[:, None], 1)
    return jnp.where(seen, means, 0.0 if fallback is None else fallback)


def ema_update(old: jax.Array, new: jax.Array, momentum, *, mask=None) -> jax.Array:
    """``momentum · old + (1 − momentum) · new``, row by row.

    PMR uses it at each prototype refresh after the first (momentum ``μ``, code 0.0 on CREMA-D);
    IIBalance per batch with ``μ = 0.9`` [INF]. Both are this same update.

    Args:
      old: ``[C, ...]`` current values (prototypes, or potentials ``[M]``).
      new: new estimates of the same shape.
      momentum: weight on ``old`` in ``[0, 1]``.
      mask: optional ``[C]`` boolean; rows where it is False keep ``old`` (a class absent from
        the batch).

    Returns:
      The updated array.
    """
    if old.shape != new.shape:
        raise ValueError(f"old {old.shape} and new {new.shape} must have the same shape.")
    updated = momentum * old + (1.0 - momentum) * new
    if mask is None:
        return updated
    return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (old.ndim - 1)), updated, old)


def prototype_logits(features: jax.Array, prototypes: jax.Array, *, metric: str = "euclidean",
                     temperature: float = 1.0) -> jax.Array:
    """Logits of the non-parametric prototype classifier (prototypes gradient-stopped).

    Args:
      features: ``[B, D]`` features.
      prototypes: ``[C, D]`` class prototypes.
      metric: ``"euclidean"``: ``−‖z − c‖`` (PMR code: not squared); ``"squared_euclidean"``:
        ``−‖z − c‖²``; ``"dot"``: ``⟨z, c⟩`` (IIBalance, with L2-normalised features);
        ``"cosine"``: ``⟨z/‖z‖, c/‖c‖⟩``.
      temperature: logits are divided by it.

    Returns:
      ``[B, C]`` logits.
    """
    check_choice("metric", metric, METRICS)
    if features.ndim != 2 or prototypes.ndim != 2 or features.shape[1] != prototypes.shape[1]:
        raise ValueError(f"features {features.shape} and prototypes {prototypes.shape} must be "
                         "[B, D] and [C, D] with the same D.")
    prototypes = jax.lax.stop_gradient(prototypes)
    if metric == "cosine":
        features, prototypes = l2_normalize(features), l2_normalize(prototypes)
    if metric in ("dot", "cosine"):
        return features @ prototypes.T / temperature
    squared = squared_distances(features, prototypes)
    # sqrt with a tiny floor keeps the gradient finite when z sits on a prototype.
    distance = squared if metric == "squared_euclidean" else jnp.sqrt(jnp.maximum(squared, 1e-12))
    return -distance / temperature


def pmr_coefficients(scores: jax.Array, *, alpha, rule: str = "code") -> jax.Array:
    """Per-modality coefficients of the prototypical CE, from the prototype scores.

    With two modalities the code's ratio is ``ρ = s_0 / s_1``: ``ρ > 1`` gives ``(0, α)``,
    ``ρ < 1`` gives ``(α, 0)`` and ``ρ = 1`` gives ``(0, 0)`` — only the weaker modality is pushed
    toward its prototypes. For ``M`` modalities we read this as: every modality below the best
    score gets the coefficient.

    Args:
      scores: ``[M]`` prototype scores ``s_m = Σ_i softmax(q^m_i)[y_i]`` (sums or means: only
        ratios matter).
      alpha: the code's ``α`` (CREMA-D script: 2.0).
      rule: ``"code"``: ``α · 1[s_m < max_k s_k]``. ``"continuous"`` [INF]: the paper scales the
        coefficient continuously with the ratio but its formula could not be read; we use
        ``α · tanh(max_k s_k / s_m − 1)``, which is 0 at balance, grows with the imbalance and
        saturates at ``α``.

    Returns:
      ``[M]`` coefficients, gradient-stopped.
    """
    check_choice("rule", rule, PMR_RULES)
    scores = jax.lax.stop_gradient(scores)
    best = jnp.max(scores)
    if rule == "code":
        return jnp.where(scores < best, alpha, 0.0)
    return alpha * jnp.tanh(best / jnp.maximum(scores, jnp.finfo(scores.dtype).tiny) - 1.0)


def pmr_loss(features: Sequence[jax.Array], prototypes: Sequence[jax.Array], labels: jax.Array, *,
             alpha, rule: str = "code", entropy_weight=0.0, where=None
             ) -> tuple[jax.Array, jax.Array]:
    """PMR's extra loss ``Σ_m coef_m · PCE_m − μ · H_dominant`` per example (add it to the CE).

    ``PCE_m`` is the CE of the prototype logits ``−‖z^m_i − c^m_k‖``; the coefficients come from
    :func:`pmr_coefficients` on the scores of the global batch. The entropy term is the paper's
    prototypical entropy regulariser [U]: minimising ``−μ·H(softmax(q^dom))`` keeps the dominant
    modality (strictly highest score) from converging early. The code has no such term; set
    ``entropy_weight`` to ``μ`` during the first epochs and 0 afterwards (it may be traced).

    Args:
      features: one ``[B, D_m]`` feature array per modality.
      prototypes: one ``[C, D_m]`` prototype array per modality.
      labels: ``[B]`` class ids.
      alpha: see :func:`pmr_coefficients`.
      rule: see :func:`pmr_coefficients`.
      entropy_weight: ``μ`` of the entropy regulariser (0 = the code).
      where: optional ``[B]`` boolean; excluded examples get 0 and do not enter the scores.

    Returns:
      ``(loss [B], coefficients [M])``.
    """
    if len(features) != len(prototypes) or not features:
        raise ValueError(f"pass one prototype array per modality: got {len(features)} feature "
                         f"and {len(prototypes)} prototype arrays.")
    logits = [prototype_logits(z, c) for z, c in zip(features, prototypes)]
    weight = jnp.ones(labels.shape) if where is None else jnp.asarray(where, jnp.float32)
    scores = jnp.stack([batch_sum(weight * true_class_probability(q, labels)) for q in logits])
    coefficients = pmr_coefficients(scores, alpha=alpha, rule=rule)
    others = jnp.where(jnp.eye(len(logits), dtype=bool), -jnp.inf, scores[None, :])
    dominant = scores > jnp.max(others, axis=1)
    # H(softmax q) = log C − KL(softmax q ‖ uniform).
    entropy = lambda q: jnp.log(q.shape[-1]) - categorical_kl_to_uniform(q)
    loss = sum(c * softmax_cross_entropy(q, labels) - entropy_weight * d * entropy(q)
               for c, d, q in zip(coefficients, dominant, logits))
    return (loss if where is None else jnp.where(where, loss, 0.0)), coefficients


def budget_gap(potentials: jax.Array, budgets: jax.Array, anchor) -> jax.Array:
    """IIBalance budget gap ``Δ_m = max(0, (b_m / b_a) · π_a − π_m)`` [INF].

    Args:
      potentials: ``[M]`` realised potentials ``π_m`` (EMA of the unimodal heads' mean
        true-class probability, see :func:`ema_update`).
      budgets: ``[M]`` information budgets (``jaxmm.monitors.budgets``), summing to 1.
      anchor: index of the anchor (highest-budget) modality.

    Returns:
      ``[M]`` non-negative gaps, gradient-stopped; ``Δ_anchor = 0``. A modality meeting its
      budgeted share of the anchor's potential has gap 0, which switches its alignment off.
    """
    if potentials.shape != budgets.shape or potentials.ndim != 1:
        raise ValueError(f"potentials {potentials.shape} and budgets {budgets.shape} must both "
                         "be [M].")
    potentials, budgets = jax.lax.stop_gradient(potentials), jax.lax.stop_gradient(budgets)
    target = budgets / budgets[anchor] * potentials[anchor]
    return jnp.maximum(target - potentials, 0.0)


def relative_alignment_loss(features: jax.Array, anchor_prototypes: jax.Array, labels: jax.Array,
                            gap, *, temperature: float = 0.1, where=None) -> jax.Array:
    """IIBalance prototype relative alignment of one weaker modality [INF].

    ``L_i = Δ_m · CE(softmax_k(⟨ẑ_{m,i}, sg(c_{a,k})⟩ / τ), y_i)`` with ``ẑ`` the L2-normalised
    features and ``c_a`` the anchor's EMA prototypes (of normalised features). It vanishes when
    the modality meets its budget (``Δ_m = 0``) instead of forcing imitation.

    Args:
      features: ``[B, D]`` features of modality ``m`` (same space as the anchor's prototypes).
      anchor_prototypes: ``[C, D]`` anchor prototypes.
      labels: ``[B]`` class ids.
      gap: scalar ``Δ_m`` from :func:`budget_gap` (gradient-stopped).
      temperature: ``τ_p`` (0.1).
      where: optional ``[B]`` boolean mask.

    Returns:
      ``[B]`` per-example loss.
    """
    logits = prototype_logits(l2_normalize(features), anchor_prototypes, metric="dot",
                              temperature=temperature)
    return jax.lax.stop_gradient(gap) * softmax_cross_entropy(logits, labels, where=where)


def alignment_ramp(total_steps: int, *, max_value: float = 1.0, fraction: float = 0.2
                   ) -> optax.Schedule:
    """IIBalance's "linear schedule" [INF]: ``λ`` from 0 to ``max_value`` over the first
    ``fraction`` of training, then constant.

    Args:
      total_steps: number of training steps (or epochs, if evaluated per epoch).
      max_value: ``λ_max`` (1).
      fraction: share of training spent ramping (0.2).

    Returns:
      An optax schedule ``step -> λ``.
    """
    if total_steps < 1 or not 0.0 < fraction <= 1.0:
        raise ValueError(f"need total_steps >= 1 and 0 < fraction <= 1, got {total_steps}, "
                         f"{fraction}.")
    return optax.linear_schedule(0.0, max_value, max(1, round(fraction * total_steps)))


def _check_batch(features: jax.Array, labels: jax.Array) -> None:
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features {features.shape} and labels {labels.shape} must be [B, D] "
                         "and [B].")
