"""k-means clustering and cluster purity in JAX (jit-compiled), with a stable pairwise distance.

Used by Diagnosing & Re-learning's diagnosis (:func:`clustering_purity`, read by
:mod:`jaxmm.transforms.dnr`) and by the prototype losses (:func:`squared_distances`).

:func:`kmeans` follows sklearn ``KMeans``: k-means++ seeding (one candidate per
step, i.e. without sklearn's greedy local trials), Lloyd iterations and ``n_init``
restarts keeping the lowest inertia. Cluster ids differ from sklearn's, but purity
depends only on the partition.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_DIFF_ELEMENTS = 1 << 22  # elements of one [block, M, D] difference tensor (16 MiB in float32)


def squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """Pairwise squared Euclidean distances ``‖x_i − y_j‖²`` from direct differences.

    The expansion ``‖x‖² − 2x·y + ‖y‖²`` cancels catastrophically when the points
    share an offset much larger than their spread (float32 keeps ~7 digits of
    ``‖x‖²``); summing the squares of the differences does not. The ``[N, M, D]``
    difference is formed per block of rows (``lax.map``) when it would be large,
    so memory stays ``O(block · M · D)``.

    Args:
      x: ``[N, D]`` points.
      y: ``[M, D]`` points.

    Returns:
      ``[N, M]`` non-negative squared distances (in the promoted dtype of ``x`` and ``y``).
    """
    def rows(xb):
        return jnp.sum(jnp.square(xb[:, None, :] - y[None, :, :]), axis=-1)

    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    block = max(1, _DIFF_ELEMENTS // max(1, m * d))
    if n <= block:
        return rows(x)
    pad = (-n) % block
    blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, block, d)
    return jax.lax.map(rows, blocks).reshape(-1, m)[:n]


def minmax_scale(x: jax.Array, feature_range: tuple[float, float] = (-1.0, 1.0)) -> jax.Array:
    """Per-feature min-max scaling of ``[N, D]`` data.

    sklearn ``MinMaxScaler``; constant features map to the low end of ``feature_range``.
    """
    x = jnp.asarray(x, jnp.float32)
    lo, hi = feature_range
    x_min, x_max = jnp.min(x, axis=0), jnp.max(x, axis=0)
    span = jnp.where(x_max > x_min, x_max - x_min, 1.0)
    return lo + (x - x_min) / span * (hi - lo)


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
        onehot = jax.nn.one_hot(jnp.argmin(squared_distances(x, centroids), 1), k, dtype=x.dtype)
        counts = jnp.sum(onehot, 0)
        sums = onehot.T @ x
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)

    centroids = jax.lax.fori_loop(0, iters, step, centroids)
    d = squared_distances(x, centroids)
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

    Raises:
      ValueError: unless ``k >= 1``, ``iters >= 0`` and ``n_init >= 1``.
    """
    if not (k >= 1 and iters >= 0 and n_init >= 1):
        raise ValueError(f"kmeans needs k >= 1, iters >= 0, n_init >= 1; got {k}, {iters}, {n_init}.")
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
