"""AGM: adaptive gradient modulation (Li et al., ICCV 2023).

Pure pieces, in the order a step uses them:

1. :func:`shapley_responses` — mono-modal responses from the masked forward
   passes (inputs of the absent modalities zeroed, BN in eval mode, gradients
   kept): the Shapley value of each modality with the empty-set value taken as
   0, ``o_a = ½[f(a,v) − f(0,v) + f(a,0)]`` for two modalities, so that
   ``Σ_m o_m = f(all)``.
2. :func:`agm_scores` — ``s_m = mean_i −log max(p(o_m,i)[y_i], 1e-8)``.
3. :func:`agm_coefficients` — with ``r_m = exp(mean_{k≠m} s_k − s_m)`` and
   ``r̄_m`` the same from the all-time running means ``s̄``
   (:mod:`jaxmm.monitors.cumulative_mean`, updated *after* this call),
   ``κ_m = exp(α · min(r̄_m − r_m, cap))``.
4. :func:`modulated_logits` — the official modulation: the loss is
   ``CE(Σ_m o_m)`` with the upstream gradient into ``o_m`` scaled by ``κ_m``.
5. :func:`agm` — the gradient transformation: the official gradient-clipping
   rule, and (``mode="groups"``) scaling of each modality group by ``κ_m``.

Official code (lihong2303/AGM_ICCV2023, ``run/CREMAD_main.py``) vs options:

* ``mode="logits"`` (default, official): κ enters through
  :func:`modulated_logits`; the transformation only applies the clipping rule.
* ``mode="groups"``: the transformation multiplies every leaf of modality
  ``m`` by ``κ_m`` inside the window (BalanceBenchmark's form, which also
  flips the ratio's sign and clips at 5: ``clip_threshold=max_norm=5``; the
  sign flip is not reproduced).
* Clipping: whenever any element of the fused head's weight gradient is
  outside ``[−1, 1]``, the global norm of all the gradients seen by the
  transformation is clipped to 1 (torch ``clip_grad_norm_``: scale
  ``min(1, max_norm / (norm + 1e-6))``). The code applies it at every step,
  in and out of the modulation window.
* More than two modalities: the ratio against the mean of the other
  modalities' scores (= AGM's own MOSEI form ``exp(2(mean − s_m))`` for two).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm.batch_reduce import batch_mean
from jaxmm.losses.ce import true_class_probability
from jaxmm._checks import check_choice
from jaxmm.transforms import _common, _tree

_NAME = "agm"


def shapley_responses(masked_logits: Mapping[Sequence[str], jax.Array],
                      modalities: Sequence[str]) -> dict[str, jax.Array]:
    """Mono-modal responses (Shapley values, empty set worth 0) from masked passes.

    Args:
      masked_logits: ``{present modalities: logits}`` for every non-empty
        subset of ``modalities``, keyed by a tuple of the present modality
        names in any order, e.g. ``{("audio", "visual"): f_av, ("audio",): f_a,
        ("visual",): f_v}`` where ``f_a`` is the pass with the visual input zeroed.
      modalities: the players.

    Returns:
      ``{modality: o_m}``, each with the logits' shape; they sum to the
      all-modality logits.

    Raises:
      ValueError: if a subset's logits are missing.
    """
    modalities = _common.check_modalities(_NAME, modalities)
    table = {frozenset(k): v for k, v in masked_logits.items()}
    n = len(modalities)

    def value(subset: frozenset) -> Any:
        if not subset:
            return 0.0
        if subset not in table:
            raise ValueError(f"{_NAME}: `masked_logits` has no entry for the subset "
                             f"{tuple(sorted(subset))}; every non-empty subset is needed.")
        return table[subset]

    responses = {}
    for m in modalities:
        others = [k for k in modalities if k != m]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                total = total + weight * (value(s | {m}) - value(s))
        responses[m] = total
    return responses


def agm_scores(responses: Mapping[str, jax.Array], labels: jax.Array,
               valid: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-modality mono-modal scores ``s_m = mean_i −log max(p(o_m,i)[y_i], 1e-8)``.

    Args:
      responses: ``{modality: [B, K] response logits}`` (softmax; sigmoid for ``K = 1``).
      labels: ``[B]`` integer class ids.
      valid: optional ``[B]`` 0/1 weights; the mean runs over the valid examples only, of the global batch.

    Returns:
      ``{modality: float32 scalar}``, gradient stopped.
    """
    def score(o):
        return batch_mean(-jnp.log(jnp.maximum(true_class_probability(o, labels), 1e-8)), valid)

    return {m: score(o) for m, o in responses.items()}


def _ratios(scores: jax.Array) -> jax.Array:
    others = (jnp.sum(scores) - scores) / (scores.shape[0] - 1)
    return jnp.exp(others - scores)


def agm_coefficients(scores: Mapping[str, Any], running_scores: Mapping[str, Any],
                     alpha: Any, cap: float = 10.0) -> dict[str, jax.Array]:
    """AGM modulation coefficients ``κ_m = exp(α · min(r̄_m − r_m, cap))``.

    Args:
      scores: ``{modality: s_m}`` of this step (:func:`agm_scores`).
      running_scores: ``{modality: s̄_m}``, the all-time means before this step.
      alpha: modulation strength α (official config 1.0; README AV-MNIST 2.5).
      cap: upper clamp of ``r̄ − r`` (official 10; BalanceBenchmark 7).

    Returns:
      ``{modality: κ_m}`` float32 scalars.
    """
    names = sorted(scores)
    if len(names) < 2:
        raise ValueError(f"{_NAME}: needs scores for at least 2 modalities, got {names}.")
    s = _common.stack_modalities(scores, names, "scores", _NAME)
    s_bar = _common.stack_modalities(running_scores, names, "running_scores", _NAME)
    kappa = jnp.exp(alpha * jnp.minimum(_ratios(s_bar) - _ratios(s), cap))
    return dict(zip(names, kappa))


def modulated_logits(responses: Mapping[str, jax.Array],
                     coefficients: Mapping[str, Any]) -> jax.Array:
    """``Σ_m o_m`` in value, with the gradient into each ``o_m`` scaled by ``κ_m``.

    ``Σ κ_m o_m − stop_gradient(Σ (κ_m − 1) o_m)``; the official code does the
    same with backward hooks.
    """
    scaled = sum(jnp.asarray(coefficients[m], o.dtype) * o for m, o in responses.items())
    excess = sum((jnp.asarray(coefficients[m], o.dtype) - 1) * o for m, o in responses.items())
    return scaled - jax.lax.stop_gradient(excess)


def agm(
    modalities: Sequence[str],
    *,
    labels: _tree.Labels,
    mode: str = "logits",
    window: tuple[int, int] | None = (0, 19),
    head_label: str = "fusion",
    clip_threshold: float | None = 1.0,
    max_norm: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    """AGM's gradient side: the clipping rule and optional per-group κ scaling.

    Args:
      modalities: modality group labels.
      labels: labels spec (pytree of str or callable, as for :func:`optax.partition`).
      mode: ``"logits"`` (official: κ is applied by :func:`modulated_logits`,
        the transformation only clips) or ``"groups"`` (multiply modality
        ``m``'s leaves by ``κ_m`` inside the window).
      window: inclusive epochs of the κ scaling in ``"groups"`` mode; the
        default is the official 1-indexed 0..20 written 0-indexed. ``None``:
        always. In ``"logits"`` mode the method applies the window itself
        (κ = 1, i.e. plain CE, outside it); the clipping rule is always on.
      head_label: label of the fused head, whose weight gradient (leaves with
        ndim ≥ 2) triggers clipping.
      clip_threshold: clip when any head-weight gradient element has
        ``|g| > clip_threshold``; ``None`` disables the rule.
      max_norm: global norm to clip to.

    Returns:
      A transformation whose ``update`` takes ``coefficients``
      (``{modality: κ_m}``) and ``epoch`` in ``"groups"`` mode; nothing in ``"logits"``
      mode. Other extra args are ignored.

    Raises:
      ValueError: for a bad ``mode``, window, non-positive ``clip_threshold`` or
        ``max_norm``; at init, for a modality that labels no parameter (``"groups"``
        mode) or a ``head_label`` that labels none (clipping on); at update, if
        clipping is on and no head weight is visible.
    """
    modalities = _common.check_modalities(_NAME, modalities)
    check_choice("mode", mode, ("logits", "groups"), owner=_NAME)
    _common.check_window(_NAME, window)
    if clip_threshold is not None:
        _common.check_positive(_NAME, "clip_threshold", clip_threshold)
    _common.check_positive(_NAME, "max_norm", max_norm)

    def scale_groups(updates, extra_args):
        kappa = _common.stack_modalities(
            _common.required(extra_args, "coefficients", _NAME, "{modality: κ_m}"),
            modalities, "coefficients", _NAME)
        kappa = jnp.where(_common.in_window(window, extra_args, _NAME), kappa, 1.0)
        index = {m: i for i, m in enumerate(modalities)}
        return _tree.map_labelled(
            lambda label, g: (kappa[index[label]] * g).astype(g.dtype) if label in index else g,
            labels, updates)

    def clip(updates):
        flat, flat_labels = _tree.flatten(updates, updates), _tree.leaf_labels(labels, updates)
        head = [g for g, lab in zip(flat, flat_labels) if lab == head_label and g.ndim >= 2]
        if not head:
            raise ValueError(f"{_NAME}: the clipping rule reads the fused-head weight gradient, "
                             f"but no leaf with ndim >= 2 is labelled {head_label!r}; set "
                             f"`head_label` or pass clip_threshold=None.")
        trigger = jnp.any(jnp.stack([jnp.max(jnp.abs(g)).astype(jnp.float32) for g in head])
                          > clip_threshold)
        leaves = [g for g, lab in zip(flat, flat_labels) if lab is not None]
        scale = jnp.where(trigger,
                          jnp.minimum(1.0, max_norm / (_tree.global_norm(leaves) + 1e-6)), 1.0)
        return _tree.map_labelled(lambda _, g: (scale * g).astype(g.dtype), labels, updates)

    def init_fn(params):
        present = _tree.leaf_labels(labels, params)
        if mode == "groups":
            _common.check_groups_present(_NAME, modalities, present)
        if clip_threshold is not None:
            _common.check_groups_present(_NAME, (head_label,), present, what="head_label")
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params
        if mode == "groups":
            updates = scale_groups(updates, extra_args)
        if clip_threshold is not None:
            updates = clip(updates)
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
