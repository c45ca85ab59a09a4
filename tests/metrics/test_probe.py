import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxmm.metrics.probe import fit_probe, probe_accuracy, probe_logits


def _reference(x, y, k, l2):
    """The same ridge normal equations in float64 numpy."""
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    z = (x - mean) / std
    t = np.eye(k)[y]
    w = np.linalg.solve(z.T @ z / len(x) + l2 * np.eye(x.shape[1]), z.T @ (t - t.mean(0)) / len(x)) / std[:, None]
    return w, t.mean(0) - mean @ w


def _gaussians(rng, n, d, k, sep):
    y = rng.integers(0, k, n)
    centers = rng.normal(size=(k, d)) * sep
    return (centers[y] + rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d)).astype(np.float32), y


def test_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    x, y = _gaussians(rng, 500, 6, 3, 1.0)
    probe = fit_probe(jnp.asarray(x), jnp.asarray(y), 3, l2=0.1)
    w, b = _reference(x.astype(np.float64), y, 3, 0.1)
    np.testing.assert_allclose(probe.weight, w, atol=2e-5)
    np.testing.assert_allclose(probe.bias, b, atol=2e-5)
    np.testing.assert_allclose(probe_logits(probe, jnp.asarray(x)), x @ w + b, atol=1e-4)


def test_two_class_direction_is_fishers_lda():
    rng = np.random.default_rng(1)
    x, y = _gaussians(rng, 2000, 5, 2, 1.0)
    probe = fit_probe(jnp.asarray(x), jnp.asarray(y), 2, l2=1e-7)
    direction = np.asarray(probe.weight[:, 1] - probe.weight[:, 0], np.float64)
    mu0, mu1 = x[y == 0].mean(0), x[y == 1].mean(0)
    within = (np.cov(x[y == 0].T) * (np.sum(y == 0) - 1) + np.cov(x[y == 1].T) * (np.sum(y == 1) - 1)) / len(x)
    lda = np.linalg.solve(within, mu1 - mu0)
    cosine = direction @ lda / np.linalg.norm(direction) / np.linalg.norm(lda)
    assert cosine > 0.9999


def test_accuracy_reaches_the_bayes_rate_of_two_isotropic_gaussians():
    rng = np.random.default_rng(2)
    n, gap = 20_000, 1.6  # means ±gap/2 on one axis: Bayes accuracy Φ(gap / 2)
    y = rng.integers(0, 2, 2 * n)
    x = rng.normal(size=(2 * n, 3)).astype(np.float32)
    x[:, 0] += gap * (y - 0.5)
    acc = probe_accuracy(x[:n], y[:n], x[n:], y[n:], 2)
    assert float(acc) == pytest.approx(norm.cdf(gap / 2), abs=0.01)


def test_dead_features_and_vmap_over_runs():
    rng = np.random.default_rng(3)
    x, y = _gaussians(rng, 300, 4, 3, 2.0)
    x[:, 2] = 0.0  # a dead ReLU unit
    runs = np.stack([x, x[::-1].copy()]), np.stack([y, y[::-1].copy()])
    acc = jax.vmap(lambda a, b: probe_accuracy(a, b, a, b, 3))(*runs)
    single = probe_accuracy(x, y, x, y, 3)
    assert np.all(np.isfinite(acc)) and np.allclose(acc, single)
    without = probe_accuracy(np.delete(x, 2, 1), y, np.delete(x, 2, 1), y, 3)  # the dead unit changes nothing
    assert float(single) == pytest.approx(float(without)) and float(single) > 1 / 3 + 0.1
