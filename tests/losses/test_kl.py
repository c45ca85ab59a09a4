import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import (bernoulli_kl, bernoulli_kl_to_half, categorical_kl, categorical_kl_to_uniform,
                          gaussian_kl, gaussian_kl_to_standard, kl_to_reference)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_categorical_kl_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    p, q = _softmax(a), _softmax(b)
    np.testing.assert_allclose(categorical_kl(a, b), (p * np.log(p / q)).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(categorical_kl(a, a), 0.0, atol=1e-6)


def test_kl_to_uniform_is_log_k_minus_entropy():
    logits = jnp.array([[0.0, 0.0, 0.0], [10.0, -10.0, -10.0]])
    kl = categorical_kl_to_uniform(logits)
    np.testing.assert_allclose(kl[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(kl[1], np.log(3), atol=1e-4)  # a one-hot prediction
    np.testing.assert_allclose(kl, categorical_kl(logits, jnp.zeros_like(logits)), rtol=1e-5, atol=1e-6)


def test_bernoulli_kl_to_half_closed_form():
    f = np.array([0.0, 1.0, -2.0])
    p = 1 / (1 + np.exp(-f))
    expected = p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p))
    np.testing.assert_allclose(bernoulli_kl_to_half(jnp.asarray(f)), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bernoulli_kl(jnp.asarray(f), jnp.zeros(3)), expected, rtol=1e-5, atol=1e-7)
    assert float(bernoulli_kl_to_half(jnp.array(50.0))) == pytest.approx(np.log(2), rel=1e-5)


def test_gaussian_kl_closed_form_and_nonnegativity():
    mu, logvar = jnp.array([[1.0, -2.0]]), jnp.array([[np.log(4.0), 0.0]])
    expected = 0.5 * ((4 + 1 - 1 - np.log(4)) + (1 + 4 - 1 - 0))
    np.testing.assert_allclose(gaussian_kl_to_standard(mu, logvar), [expected], rtol=1e-6)
    np.testing.assert_allclose(gaussian_kl(mu, logvar, jnp.zeros(2), jnp.zeros(2)), [expected], rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 4)
    vals = gaussian_kl(*(jax.random.normal(k, (64, 3)) for k in keys))
    assert float(vals.min()) >= 0


def test_kl_to_reference_variants():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(kl_to_reference(logits), categorical_kl_to_uniform(logits))
    binary = jnp.array([[0.5], [-1.0]])
    np.testing.assert_allclose(kl_to_reference(binary), bernoulli_kl_to_half(binary[:, 0]), rtol=1e-6)
    ref = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(kl_to_reference(logits, "unimodal", reference_logits=ref), categorical_kl(ref, logits))
    np.testing.assert_allclose(kl_to_reference(logits, "gaussian", logvar=jnp.zeros_like(logits)),
                               0.5 * (logits**2).sum(-1))


def test_kl_to_reference_bad_input():
    with pytest.raises(ValueError, match="`reference` must be one of 'uniform', 'unimodal', 'gaussian'; got 'beta'"):
        kl_to_reference(jnp.zeros((1, 2)), "beta")
    with pytest.raises(ValueError, match="reference_logits"):
        kl_to_reference(jnp.zeros((1, 2)), "unimodal")
    with pytest.raises(ValueError, match="logvar"):
        kl_to_reference(jnp.zeros((1, 2)), "gaussian")
