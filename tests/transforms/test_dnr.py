"""Diagnosing & Re-learning: purity, k-means, reset strength, soft re-initialisation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.dnr import (clustering_purity, kmeans, minmax_scale, purity, reinit,
                                  reinit_strength)

from .contract import group_labels


@pytest.mark.parametrize("train, val, lam, expected", [
    (0.8, 0.6, 3.0, math.tanh(0.6)),
    (0.55, 0.70, 3.0, math.tanh(0.45)),
    (0.5, 0.5, 3.0, 0.0),
    (0.9, 0.4, 1.0, math.tanh(0.5)),
])
def test_reset_strength_from_purities(train, val, lam, expected):
    np.testing.assert_allclose(reinit_strength(train, val, lam), expected, rtol=1e-6, atol=1e-7)


def test_purity_by_hand():
    # Clusters {0,1,2} -> labels {0,0,1}: 2; {3,4} -> {1,1}: 2; {5} -> {2}: 1. Purity 5/6.
    assign = jnp.array([0, 0, 0, 1, 1, 2])
    labels = jnp.array([0, 0, 1, 1, 1, 2])
    np.testing.assert_allclose(purity(assign, labels, 3, 3), 5 / 6, rtol=1e-6)


def test_minmax_scale():
    x = jnp.array([[0.0, 5.0, 2.0], [10.0, 5.0, 4.0], [5.0, 5.0, 3.0]])
    np.testing.assert_allclose(minmax_scale(x), [[-1, -1, -1], [1, -1, 1], [0, -1, 0]], atol=1e-6)


def test_kmeans_and_purity_on_separated_blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    labels = np.repeat(np.arange(3), 40)
    x = centers[labels] + 0.3 * rng.standard_normal((120, 3))
    key = jax.random.PRNGKey(0)
    assign, centroids, inertia = kmeans(key, minmax_scale(x), 3)
    assert centroids.shape == (3, 3) and float(inertia) < 120 * 3 * (0.3 / 2.5) ** 2 * 2
    np.testing.assert_allclose(purity(assign, jnp.asarray(labels), 3, 3), 1.0)
    np.testing.assert_allclose(clustering_purity(key, jnp.asarray(x), jnp.asarray(labels), 3), 1.0)
    shuffled = jnp.asarray(rng.permutation(labels))
    assert float(clustering_purity(key, jnp.asarray(x), shuffled, 3)) < 0.6


def test_reinit_mixes_listed_groups_only_and_keeps_dtypes():
    params = {"audio": {"w": jnp.full((2, 2), 1.0), "b": jnp.full((2,), 1.0, jnp.bfloat16)},
              "visual": {"w": jnp.full((2, 2), 3.0)}, "head": {"w": jnp.full((2, 2), 7.0)}}
    init = jax.tree.map(jnp.zeros_like, params)
    out = reinit(params, init, {"audio": 0.25, "visual": 0.5}, labels=group_labels)
    np.testing.assert_allclose(out["audio"]["w"], 0.75)
    np.testing.assert_allclose(np.asarray(out["audio"]["b"], np.float32), 0.75)
    assert out["audio"]["b"].dtype == jnp.bfloat16
    np.testing.assert_allclose(out["visual"]["w"], 1.5)
    np.testing.assert_array_equal(out["head"]["w"], params["head"]["w"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="`lam` must be non-negative"):
        reinit_strength(0.5, 0.4, -1.0)
    with pytest.raises(ValueError, match="kmeans needs k >= 1"):
        kmeans(jax.random.PRNGKey(0), jnp.ones((4, 2)), 0)
