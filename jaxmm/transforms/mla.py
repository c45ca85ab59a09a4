"""MLA: alternating unimodal adaptation with gradient modification (Zhang et al., CVPR 2024).

Training alternates one optimiser step per modality per batch, every step on
``CE(H(z_m), y)`` through a head ``H`` shared by all modalities. Before every
step except the very first, an OWM-style projector ``P ∈ R^{d×d}`` (initially
``I``, shared across modalities, in the state) is updated with the mean
feature ``r = mean_i z_{m,i}`` of the current modality's batch and the
forgetting factor ``α_t = base^{1 + batch_index / batches_per_epoch}``:

``k = P rᵀ;  P ← P − k kᵀ / (α_t + r k);  P ← P / ‖P‖_F``

and the head's weight gradient is modified with ``P``. Flax kernels are
``[d, C]`` (torch's weight transposed), so torch's ``∇W Pᵀ`` is ``P ∇K`` here.

Options (``projection``):

* ``"replace"`` (default, the paper's intent): ``∇K ← P ∇K``;
* ``"add"`` (BalanceBenchmark): ``∇K ← ∇K + P ∇K``;
* ``"none"`` (official code): the official update is guarded by a parameter
  name that never matches, so neither the projector nor the gradient changes.

``denominator``: ``"scalar"`` (default, OWM: ``α_t + r·k``) or ``"outer"``
(both the official and BalanceBenchmark code write ``α_t + k r``, an outer
product, so the division is element-wise by a ``d×d`` matrix).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_mean, is_per_device
from jaxmm.transforms import _common, _tree

_NAME = "mla"


class MLAState(NamedTuple):
    """State of :func:`mla`.

    Attributes:
      projector: ``[d, d]`` float32 projector ``P``.
      count: int32 number of unimodal steps taken so far.
    """

    projector: jax.Array
    count: jax.Array


def update_projector(projector: jax.Array, features: jax.Array, alpha: Any, *,
                     denominator: str = "scalar") -> jax.Array:
    """One OWM update of ``P`` with the batch-mean feature, then Frobenius normalisation.

    Args:
      projector: ``[d, d]`` current ``P``.
      features: ``[B, d]`` features of the current modality (input of the head); rows that differ per
        device are averaged over the global batch, rows the same on every device (a global mean) as given.
      alpha: forgetting factor ``α_t``.
      denominator: ``"scalar"`` (``α + r k``) or ``"outer"`` (code: ``α + k r``).

    Returns:
      The new ``[d, d]`` float32 projector.
    """
    features = jax.lax.stop_gradient(features).astype(jnp.float32)
    r = (batch_mean(features) if is_per_device(features) else jnp.mean(features, axis=0))[None, :]
    k = projector @ r.T
    denom = alpha + (r @ k if denominator == "scalar" else k @ r)
    new = projector - (k @ k.T) / denom
    return new / jnp.linalg.norm(new)


def _head_width(params: Any, labels: _tree.Labels, head_label: str) -> int:
    widths = {leaf.shape[0] for leaf, lab in zip(_tree.flatten(params, params), _tree.leaf_labels(labels, params))
              if lab == head_label and leaf.ndim == 2}
    if len(widths) != 1:
        raise ValueError(f"{_NAME}: cannot infer `feature_dim`: the 2-D leaves labelled {head_label!r} have "
                         f"input widths {sorted(widths)}; pass `feature_dim=` explicitly.")
    return widths.pop()


def mla(
    feature_dim: int | None = None,
    *,
    labels: _tree.Labels,
    head_label: str = "head",
    projection: str = "replace",
    denominator: str = "scalar",
    base: float = 0.1,
) -> optax.GradientTransformationExtraArgs:
    """MLA gradient modification of the shared head, one call per unimodal step.

    Args:
      feature_dim: feature width ``d`` entering the shared head; ``None``: the
        input width of the 2-D leaves labelled ``head_label`` found by ``init``.
      labels: labels spec (pytree of str or callable, as for :func:`optax.partition`).
      head_label: label of the shared head; its ``[d, C]`` kernels are modified,
        other leaves (biases, encoders) are untouched.
      projection: ``"replace"``, ``"add"`` or ``"none"`` (see module docstring).
      denominator: ``"scalar"`` or ``"outer"`` (see module docstring).
      base: base of the forgetting factor (official 0.1).

    Returns:
      A transformation whose ``update`` takes ``features`` (``[B, d]``, the
      current modality's head inputs) and ``epoch_fraction`` (batch index /
      batches per epoch, in [0, 1)). Other extra args are ignored.

    Raises:
      ValueError: for ``feature_dim < 1``, an unknown option or ``base`` not in
        (0, 1); at init, if no parameter is labelled ``head_label``, or if
        ``feature_dim`` is ``None`` and the head's 2-D leaves do not share one
        input width; at update, if no ``[d, C]`` leaf carries
        ``head_label``.
    """
    _common.check(feature_dim is None or feature_dim >= 1, _NAME, f"`feature_dim` must be >= 1, got {feature_dim!r}.")
    check_choice("projection", projection, ("replace", "add", "none"),
                 owner=_NAME)
    check_choice("denominator", denominator, ("scalar", "outer"), owner=_NAME)
    _common.check((base > 0) & (base < 1), _NAME, f"`base` must be in (0, 1), got {base!r}.")

    def init_fn(params):
        _common.check_groups_present(_NAME, (head_label,), _tree.leaf_labels(labels, params),
                                     what="head_label")
        dim = feature_dim if feature_dim is not None else _head_width(params, labels, head_label)
        return MLAState(jnp.eye(dim, dtype=jnp.float32), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del params
        dim = state.projector.shape[0]
        if projection == "none":
            return updates, MLAState(state.projector, state.count + 1)
        features = _common.required(extra_args, "features", _NAME, "[B, d] head inputs")
        fraction = jnp.asarray(
            _common.required(extra_args, "epoch_fraction", _NAME, "batch index / batches per epoch"),
            jnp.float32)
        flat, flat_labels = _tree.flatten(updates, updates), _tree.leaf_labels(labels, updates)
        kernels = [i for i, (g, lab) in enumerate(zip(flat, flat_labels))
                   if lab == head_label and g.ndim == 2 and g.shape[0] == dim]
        if not kernels:
            raise ValueError(f"{_NAME}: no [{dim}, C] leaf is labelled {head_label!r}; "
                             f"check `head_label` and `feature_dim`.")
        active = state.count > 0
        alpha = base ** (1.0 + fraction)
        projector = jnp.where(
            active, update_projector(state.projector, features, alpha, denominator=denominator),
            state.projector)

        def modify(g):
            projected = projector @ g.astype(jnp.float32)
            new = projected if projection == "replace" else g.astype(jnp.float32) + projected
            return jnp.where(active, new, g.astype(jnp.float32)).astype(g.dtype)

        out = [modify(g) if i in kernels else g for i, g in enumerate(flat)]
        return _tree.unflatten(updates, out), MLAState(projector, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
