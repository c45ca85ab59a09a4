"""RedReg: adaptive redundancy regulation (arXiv 2511.13755), built on InfoReg's proximal pull.

Per step, from the observations the method computes (monitor outputs):

1. dominance: ``m*`` with the strictly largest confidence ``p_m`` (batch mean
   true-class probability of the unimodal head), ``m'`` the runner-up;
2. the redundant-phase monitor fires when ``r_{m*} > R``
   (:mod:`jaxmm.monitors.redundancy_phase` gives ``r_m``);
3. suppression strength ``β_{m*} = exp(κ · tanh(max(p_{m*} − p_{m'}, 0)))``
   when it fires, every other modality 0;
4. co-information gate: ``sim ≥ τ(e)`` with
   ``τ(e) = τ_min + (τ_max − τ_min) · e / max(1, E − 1)`` (epoch-linear);
   ``β̃ = β · gate``;
5. per parameter tensor of the dominant encoder, with ``g`` the joint gradient
   (the updates: gradient of the summed losses) and ``d = θ − θ_e`` the drift
   from the epoch-start snapshot (held in the state, refreshed when the
   ``epoch`` extra arg changes):
   ``ĝ = g + β̃ · d⊥``, ``d⊥ = d − ⟨d, g⟩/(‖g‖² + 1e-12) · g`` (``d⊥ = d``
   for ``g ≡ 0``). ``⟨ĝ − g, g⟩ = 0``, so the first-order loss decrease is
   unchanged. Heads and the other encoders keep ``g``.

Paper vs official code (xia-zhe/RedReg, ``main_RedReg.py``):

* Gate comparison: the paper writes ``sim ≥ τ`` (default,
  ``gate_inclusive=True``); the code uses ``sim > τ`` (``gate_inclusive=False``).
* γ of the monitor (0.5 paper / 0.6 code) lives in
  :func:`jaxmm.monitors.redundancy_phase.update_redundancy_phase`.
* The projection is per tensor, as in the code.
* More than two modalities (an extension): dominance over the runner-up; the
  similarity is whatever the method passes (e.g. the mean pairwise cosine of
  :func:`~jaxmm.monitors.redundancy_phase.co_information_similarity`).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm import kernels

from jaxmm.transforms import _common, _tree

_NAME = "redreg"


class RedRegState(NamedTuple):
    """State of :func:`redreg`.

    Attributes:
      epoch: int32, the epoch of ``snapshot`` (−1 before the first step).
      snapshot: the modality groups' parameters at the start of ``epoch``
        (other leaves are :class:`optax.MaskedNode`).
      beta: ``[M]`` float32 gated strengths ``β̃_m`` of the last step (for logging).
    """

    epoch: jax.Array
    snapshot: Any
    beta: jax.Array


def gate_threshold(epoch: Any, num_epochs: Any, tau_min: Any = 0.2, tau_max: Any = 0.5) -> jax.Array:
    """Epoch-linear gate threshold ``τ(e) = τ_min + (τ_max − τ_min) · e / max(1, E − 1)`` (``E`` traceable)."""
    frac = jnp.asarray(epoch, jnp.float32) / jnp.maximum(1.0, jnp.asarray(num_epochs, jnp.float32) - 1.0)
    return tau_min + (tau_max - tau_min) * frac


def suppression_strength(confidence: jax.Array, indicator: jax.Array, *, threshold: Any = 0.15,
                         kappa: Any = 0.9) -> jax.Array:
    """Ungated ``[M]`` strengths: ``exp(κ·tanh(margin))`` for a dominant modality with ``r > R``.

    Args:
      confidence: ``[M]`` confidences ``p_m``.
      indicator: ``[M]`` redundancy indicators ``r_m``.
      threshold: trigger ``R``.
      kappa: strength scale κ (code ``beta_scale`` 0.9).

    Returns:
      ``[M]`` float32, non-zero only for the dominant modality when its monitor fires.
    """
    is_dom, margin = _common.dominance(jnp.asarray(confidence, jnp.float32))
    fire = is_dom & (jnp.asarray(indicator, jnp.float32) > threshold)
    return jnp.where(fire, jnp.exp(kappa * jnp.tanh(margin)), 0.0)


def redreg(
    modalities: Sequence[str],
    *,
    labels: _tree.Labels,
    num_epochs: int | None = None,
    threshold: float = 0.15,
    kappa: float = 0.9,
    tau_min: float = 0.2,
    tau_max: float = 0.5,
    gate_inclusive: bool = True,
) -> optax.GradientTransformationExtraArgs:
    """RedReg orthogonal-complement suppression of the dominant encoder.

    Args:
      modalities: modality group labels, e.g. ``("audio", "visual")``.
      labels: labels spec (pytree of str or callable, as for
        :func:`optax.partition`); leaves labelled with a modality are its
        encoder, others (heads) are untouched.
      num_epochs: total epochs ``E`` of the run (for the gate schedule);
        ``None``: read from the ``num_epochs`` extra arg at every update.
      threshold: redundancy trigger ``R`` (0.15, paper and code).
      kappa: strength scale κ (0.9).
      tau_min: gate threshold at the first epoch (0.2).
      tau_max: gate threshold at the last epoch (0.5).
      gate_inclusive: ``sim ≥ τ`` (paper) if True, ``sim > τ`` (code) if False.

    Returns:
      A transformation whose ``update`` needs ``params`` and the keyword
      extra args ``confidence`` (``{modality: p_m}``), ``redundancy``
      (``{modality: r_m}``, the monitor's indicator), ``similarity`` (scalar
      ``sim``), ``epoch`` (int) and, when ``num_epochs`` is ``None``,
      ``num_epochs`` (int, may be traced). Other extra args are ignored.

    Raises:
      ValueError: for fewer than two modalities, ``num_epochs < 1``, negative
        ``threshold`` / ``kappa`` or ``tau_min > tau_max``; at init, for a
        modality that labels no parameter.
    """
    modalities = _common.check_modalities(_NAME, modalities)
    _common.check(num_epochs is None or num_epochs >= 1, _NAME,
                  f"`num_epochs` must be >= 1 (or None), got {num_epochs!r}.")
    _common.check_positive(_NAME, "threshold", threshold, allow_zero=True)
    _common.check_positive(_NAME, "kappa", kappa, allow_zero=True)
    _common.check(tau_min <= tau_max, _NAME,
                  f"`tau_min` ({tau_min!r}) must not exceed `tau_max` ({tau_max!r}).")
    index = {m: i for i, m in enumerate(modalities)}

    def init_fn(params):
        _common.check_groups_present(_NAME, modalities, _tree.leaf_labels(labels, params))
        return RedRegState(
            epoch=jnp.full((), -1, jnp.int32),
            snapshot=_tree.keep_groups(labels, params, modalities),
            beta=jnp.zeros((len(modalities),), jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _common.require_params(params, _NAME)

        def per_modality(name, what):
            return _common.stack_modalities(
                _common.required(extra_args, name, _NAME, what), modalities, name, _NAME)

        confidence = per_modality("confidence", "{modality: batch mean p(y|x_m)}")
        indicator = per_modality("redundancy", "{modality: r_m from the redundancy-phase monitor}")
        similarity = jnp.asarray(
            _common.required(extra_args, "similarity", _NAME, "mean cross-modal cosine"),
            jnp.float32)
        epoch = _common.required(extra_args, "epoch", _NAME, "current epoch, an int")
        snapshot, epoch, _ = _tree.refresh_on_new_epoch(state.snapshot, state.epoch, params, epoch)

        total = num_epochs if num_epochs is not None else _common.required(
            extra_args, "num_epochs", _NAME, "total epochs of the run, an int")
        tau = gate_threshold(epoch, total, tau_min, tau_max)
        gate = (similarity >= tau) if gate_inclusive else (similarity > tau)
        beta = suppression_strength(confidence, indicator, threshold=threshold, kappa=kappa)
        beta = jnp.where(gate, beta, 0.0)

        flat = _tree.flatten(updates, updates)
        chosen = [(i, index[lab]) for i, lab in enumerate(_tree.leaf_labels(labels, updates)) if lab in index]
        if chosen:
            project = (kernels.orthogonal_update if kernels.enabled("orthogonal_update")
                       else kernels.orthogonal_update_reference)
            flat_params, flat_snapshot = _tree.flatten(params, updates), _tree.flatten(snapshot, updates)
            new = project([flat[i] for i, _ in chosen], [flat_params[i] for i, _ in chosen],
                          [flat_snapshot[i] for i, _ in chosen], beta[jnp.asarray([m for _, m in chosen])])
            for (i, _), leaf in zip(chosen, new):
                flat[i] = leaf
        return _tree.unflatten(updates, flat), RedRegState(epoch, snapshot, beta)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
