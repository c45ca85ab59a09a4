"""KSG and plug-in mutual-information estimators.

Every KSG call jitters with the same key, so the tests share a few compiled programs.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.feature_selection import mutual_info_regression

from jaxmm.metrics.ksg import ksg_mutual_information, plugin_mutual_information

KEY = jax.random.key(0)


def _gaussian_pair(rho, n=600, seed=0):
    z = np.random.default_rng(seed).multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return z[:, 0].astype(np.float32), z[:, 1].astype(np.float32)


def test_independent_is_near_zero_and_identical_is_high():
    x, y = _gaussian_pair(0.0)
    assert float(ksg_mutual_information(x, y, key=KEY)) < 0.03
    assert float(ksg_mutual_information(x, x, key=KEY)) > 4.0   # ≈ ψ(N) − ψ(k)


@pytest.mark.parametrize("rho", [0.6, 0.9])
def test_matches_gaussian_closed_form(rho):
    x, y = _gaussian_pair(rho, seed=1)
    expected = -0.5 * np.log(1 - rho**2)
    assert abs(float(ksg_mutual_information(x, y, key=KEY)) - expected) < 0.06


def test_matches_sklearn():
    x, y = _gaussian_pair(0.7, seed=2)
    theirs = mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)[0]
    np.testing.assert_allclose(float(ksg_mutual_information(x, y, key=KEY)), theirs, atol=1e-3)


def test_where_equals_filtering_and_vectors_work():
    x, y = _gaussian_pair(0.8, seed=3)
    keep = np.arange(600) % 3 != 0
    masked = float(ksg_mutual_information(x, y, where=keep))
    np.testing.assert_allclose(masked, float(ksg_mutual_information(x[keep], y[keep])), rtol=1e-5)
    # After scaling, a duplicated column leaves every max-norm distance unchanged.
    stacked = float(ksg_mutual_information(np.stack([x, 2 * x], 1), y, where=keep))
    np.testing.assert_allclose(stacked, masked, rtol=1e-5)


def test_plugin_mutual_information():
    a = np.arange(400) % 4
    b = (np.arange(400) // 4) % 4   # independent of a by construction
    run = jax.jit(lambda a, b, w: plugin_mutual_information(a, b, num_a=4, num_b=4, where=w))
    everything = np.ones(400, bool)
    np.testing.assert_allclose(float(run(a, a, everything)), np.log(4), rtol=1e-5)
    assert abs(float(run(a, b, everything))) < 1e-6
    np.testing.assert_allclose(float(run(a, a, a < 2)), np.log(2), rtol=1e-5)


def test_bad_inputs():
    x, y = _gaussian_pair(0.5, n=20)
    with pytest.raises(ValueError, match="paired samples"):
        ksg_mutual_information(x, y[:10])
    with pytest.raises(ValueError, match="lower k"):
        ksg_mutual_information(x, y, k=20)
    with pytest.raises(ValueError, match=r"\[N\] or \[N, d\]"):
        ksg_mutual_information(x.reshape(2, 2, 5), y)
    with pytest.raises(ValueError, match="matching"):
        plugin_mutual_information(jnp.zeros(3, int), jnp.zeros(4, int), num_a=2, num_b=2)
