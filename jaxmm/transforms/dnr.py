"""Diagnosing & Re-learning (Wei, Li, Feng, Hu, ECCV 2024): purity diagnosis and soft re-initialisation.

Not a gradient transformation: an epoch hook built from three pure pieces.

1. :func:`jaxmm.metrics.clustering.clustering_purity` — min-max scale the pooled
   encoder features of a split to [−1, 1], cluster them with k-means (``k`` =
   number of classes), purity ``= (1/N) Σ_clusters max_k |{i ∈ cluster : y_i = k}|``;
2. :func:`reinit_strength` — ``α_m = tanh(λ · |P_train^m − P_val^m|)``;
3. :func:`reinit` — every leaf of encoder ``m``:
   ``θ ← α_m θ_init + (1 − α_m) θ`` (heads untouched, optimiser state kept).

Official code (GeWu-Lab/Diagnosing_Relearning_ECCV2024, ``code/ours.py``)
uses sklearn ``KMeans(random_state=0)``: k-means++ seeding and ``n_init``
restarts (10 in older sklearn, 1 since 1.4).
:func:`jaxmm.metrics.clustering.kmeans` implements k-means++ and Lloyd
iterations in JAX with ``n_init`` restarts (default 1) keeping the lowest
inertia; cluster ids differ from sklearn's but purity depends only on the
partition.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxmm.transforms import _common, _tree

_NAME = "dnr"


def reinit_strength(purity_train: Any, purity_val: Any, lam: Any = 3.0) -> jax.Array:
    """Re-initialisation strength ``α = tanh(λ · |P_train − P_val|)`` (official λ = 3)."""
    _common.check_positive(_NAME, "lam", lam, allow_zero=True)
    gap = jnp.abs(jnp.asarray(purity_train, jnp.float32) - jnp.asarray(purity_val, jnp.float32))
    return jnp.tanh(lam * gap)


def reinit(params: Any, init_params: Any, strength: Mapping[str, Any], *, labels: _tree.Labels) -> Any:
    """Soft re-initialisation ``θ ← α_m θ_init + (1 − α_m) θ`` of the labelled groups.

    Args:
      params: current parameters.
      init_params: the parameters at initialisation (same structure).
      strength: ``{group label: α_m}``; groups not listed are unchanged.
      labels: labels spec (pytree of str or callable, as for :func:`optax.partition`).

    Returns:
      New parameters, each leaf in its own dtype.

    Raises:
      ValueError: if a group of ``strength`` labels no leaf of ``params``.
    """
    _common.check_groups_present(_NAME, strength, _tree.leaf_labels(labels, params), what="strength")

    def mix(label, theta, theta0):
        if label not in strength:
            return theta
        a = jnp.asarray(strength[label], jnp.float32)
        return (a * theta0.astype(jnp.float32) + (1 - a) * theta.astype(jnp.float32)).astype(theta.dtype)

    return _tree.map_labelled(mix, labels, params, init_params)
