"""Diagnosing & Re-learning (Wei, Li, Feng, Hu, ECCV 2024): purity diagnosis and soft re-initialisation.

Not a gradient transformation: an epoch hook built from three pure pieces.

1. :func:`clustering_purity` — min-max scale the pooled encoder features of a
   split to [−1, 1], cluster them with k-means (``k`` = number of classes,
   :func:`kmeans`), purity ``= (1/N) Σ_clusters max_k |{i ∈ cluster : y_i = k}|``;
2. :func:`reinit_strength` — ``α_m = tanh(λ · |P_train^m − P_val^m|)``;
3. :func:`reinit` — every leaf of encoder ``m``:
   ``θ ← α_m θ_init + (1 − α_m) θ`` (heads untouched, optimiser state kept).

Official code (GeWu-Lab/Diagnosing_Relearning_ECCV2024, ``code/ours.py``)
uses sklearn ``KMeans(random_state=0)``: k-means++ seeding and ``n_init``
restarts (10 in older sklearn, 1 since 1.4). :func:`kmeans` implements
k-means++ and Lloyd iterations in JAX with ``n_init`` restarts (default 1)
keeping the lowest inertia; cluster ids differ from sklearn's but purity
depends only on the partition.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxmm.transforms import _common, _tree

_NAME = "dnr"


def minmax_scale(x: jax.Array, feature_range: tuple[float, float] = (-1.0, 1.0)) -> jax.Array:
    """Per-feature min-max scaling of ``[N, D]`` data (sklearn ``MinMaxScaler``; constant features map to the low end)."""
    x = jnp.asarray(x, jnp.float32)
    lo, hi = feature_range
    x_min, x_max = jnp.min(x, axis=0), jnp.max(x, axis=0)
    span = jnp.where(x_max > x_min, x_max - x_min, 1.0)
    return lo + (x - x_min) / span * (hi - lo)


def _sq_dists(x: jax.Array, centroids: jax.Array) -> jax.Array:
    return jnp.maximum(
        jnp.sum(x * x, 1)[:, None] - 2 * x @ centroids.T + jnp.sum(centroids * centroids, 1)[None, :],
        0.0)


def _kmeans_pp(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    n = x.shape[0]
    first_key, key = jax.random.split(key)
    centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(
        x[jax.random.randint(first_key, (), 0, n)])
    closest = jnp.sum((x - centroids[0]) ** 2, 1)

    def add(i, carry):
        centroids, closest, key = carry
        key, sub = jax.random.split(key)
        total = jnp.sum(closest)
        p = jnp.where(total > 0, closest / jnp.where(total > 0, total, 1.0), 1.0 / n)
        c = x[jax.random.choice(sub, n, p=p)]
        return centroids.at[i].set(c), jnp.minimum(closest, jnp.sum((x - c) ** 2, 1)), key

    centroids, _, _ = jax.lax.fori_loop(1, k, add, (centroids, closest, key))
    return centroids


def _lloyd(x: jax.Array, centroids: jax.Array, iters: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    k = centroids.shape[0]

    def step(_, centroids):
        onehot = jax.nn.one_hot(jnp.argmin(_sq_dists(x, centroids), 1), k, dtype=x.dtype)
        counts = jnp.sum(onehot, 0)
        sums = onehot.T @ x
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)

    centroids = jax.lax.fori_loop(0, iters, step, centroids)
    d = _sq_dists(x, centroids)
    assign = jnp.argmin(d, 1)
    return assign, centroids, jnp.sum(jnp.min(d, 1))


@functools.partial(jax.jit, static_argnames=("k", "iters", "n_init"))
def _kmeans(key: jax.Array, x: jax.Array, k: int, iters: int, n_init: int):
    x = x.astype(jnp.float32)

    def run(key):
        return _lloyd(x, _kmeans_pp(key, x, k), iters)

    assign, centroids, inertia = jax.vmap(run)(jax.random.split(key, n_init))
    best = jnp.argmin(inertia)
    return assign[best], centroids[best], inertia[best]


def kmeans(key: jax.Array, x: jax.Array, k: int, *, iters: int = 100,
           n_init: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    """k-means with k-means++ seeding, ``iters`` Lloyd iterations and ``n_init`` restarts.

    Args:
      key: PRNG key (fixed for a deterministic diagnosis).
      x: ``[N, D]`` points.
      k: number of clusters.
      iters: Lloyd iterations per restart (empty clusters keep their centroid).
      n_init: restarts; the one with the lowest inertia is returned.

    Returns:
      ``(assignments [N] int, centroids [k, D] float32, inertia)``.
    """
    _common.check(k >= 1 and iters >= 0 and n_init >= 1, _NAME,
                  f"kmeans needs k >= 1, iters >= 0, n_init >= 1; got {k}, {iters}, {n_init}.")
    return _kmeans(key, jnp.asarray(x), k, iters, n_init)


def purity(assignments: jax.Array, labels: jax.Array, num_clusters: int, num_classes: int) -> jax.Array:
    """Cluster purity ``(1/N) Σ_c max_k |{i : a_i = c, y_i = k}|``."""
    table = jax.nn.one_hot(assignments, num_clusters).T @ jax.nn.one_hot(labels, num_classes)
    return jnp.sum(jnp.max(table, axis=1)) / assignments.shape[0]


def clustering_purity(key: jax.Array, features: jax.Array, labels: jax.Array, num_classes: int,
                      *, iters: int = 100, n_init: int = 1) -> jax.Array:
    """D&R diagnosis of one (modality, split): purity of k-means clusters of scaled features.

    Args:
      key: PRNG key for k-means.
      features: ``[N, D]`` pooled encoder features (eval mode, no augmentation).
      labels: ``[N]`` integer labels.
      num_classes: number of classes (= number of clusters).
      iters: Lloyd iterations.
      n_init: k-means restarts.

    Returns:
      float32 purity in ``[1/num_classes, 1]``.
    """
    assign, _, _ = kmeans(key, minmax_scale(features), num_classes, iters=iters, n_init=n_init)
    return purity(assign, labels, num_classes, num_classes)


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
    """
    def mix(label, theta, theta0):
        if label not in strength:
            return theta
        a = jnp.asarray(strength[label], jnp.float32)
        return (a * theta0.astype(jnp.float32) + (1 - a) * theta.astype(jnp.float32)).astype(theta.dtype)

    return _tree.map_labelled(mix, labels, params, init_params)
