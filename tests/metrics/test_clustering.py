"""k-means (JAX), purity and stable pairwise distances, against numpy / sklearn references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.metrics import clustering
from jaxmm.metrics.clustering import clustering_purity, kmeans, minmax_scale, purity, squared_distances


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


def test_kmeans_inertia_matches_sklearn_on_blobs():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.5, size=(50, 4)) for c in (-3.0, 0.0, 3.0, 6.0)])
    ours = float(kmeans(jax.random.PRNGKey(0), x, 4, n_init=4)[2])
    ref = sklearn_cluster.KMeans(4, n_init=4, random_state=0).fit(x).inertia_
    np.testing.assert_allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("block_elements", [None, 64])  # one block, and the lax.map path
def test_squared_distances_with_offset_1000x_spread(monkeypatch, block_elements):
    if block_elements is not None:
        monkeypatch.setattr(clustering, "_DIFF_ELEMENTS", block_elements)
    rng = np.random.default_rng(0)
    offset = 1000.0 * rng.standard_normal(16)  # common offset: 1000x the spread (1)
    x = (offset + rng.standard_normal((37, 16))).astype(np.float32)
    y = (offset + rng.standard_normal((5, 16))).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    ref = ((x64[:, None, :] - y64[None, :, :]) ** 2).sum(-1)
    got = np.asarray(squared_distances(jnp.asarray(x), jnp.asarray(y)))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # The expansion |x|^2 - 2 x.y + |y|^2 in float32 is off by far more on the same inputs.
    expanded = (x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None, :]
    assert np.max(np.abs(expanded - ref) / ref) > 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="kmeans needs k >= 1"):
        kmeans(jax.random.PRNGKey(0), jnp.ones((4, 2)), 0)
