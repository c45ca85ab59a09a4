import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import classification_loss, sigmoid_cross_entropy, softmax_cross_entropy
from jaxmm.losses.ce import as_categorical, true_class_probability


def test_softmax_ce_matches_closed_form():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    labels = np.array([0, 2])
    expected = -np.log(np.exp(logits[np.arange(2), labels]) / np.exp(logits).sum(1))
    np.testing.assert_allclose(softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-6)
    np.testing.assert_allclose(expected[1], np.log(3), rtol=1e-6)


def test_sigmoid_ce_closed_form_and_stability():
    logits = jnp.array([0.0, 3.0, -3.0, 100.0])
    labels = jnp.array([1, 1, 1, 0])
    p = 1 / (1 + np.exp(-np.array([0.0, 3.0, -3.0])))
    expected = np.concatenate([-np.log(p), [100.0]])
    np.testing.assert_allclose(sigmoid_cross_entropy(logits, labels), expected, rtol=1e-5)
    np.testing.assert_allclose(sigmoid_cross_entropy(logits[:, None], labels), expected, rtol=1e-5)


def test_where_zeroes_excluded_examples():
    loss = softmax_cross_entropy(jnp.zeros((3, 4)), jnp.array([0, 1, 2]), where=jnp.array([True, False, True]))
    np.testing.assert_allclose(loss, [np.log(4), 0.0, np.log(4)], rtol=1e-6)


def test_classification_loss_dispatches_on_logit_count():
    np.testing.assert_allclose(classification_loss(jnp.zeros((2, 1)), jnp.array([0, 1])), [np.log(2)] * 2, rtol=1e-6)
    np.testing.assert_allclose(classification_loss(jnp.zeros((2, 5)), jnp.array([0, 4])), [np.log(5)] * 2, rtol=1e-6)


def test_binary_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="do not match labels"):
        sigmoid_cross_entropy(jnp.zeros((4, 2)), jnp.zeros(4))


def test_as_categorical_reads_one_logit_as_a_sigmoid():
    f = np.array([[-2.0], [0.0], [3.0]], np.float32)
    two = np.asarray(as_categorical(jnp.asarray(f)))
    np.testing.assert_array_equal(two, np.concatenate([np.zeros_like(f), f], -1))
    softmax = np.exp(two) / np.exp(two).sum(-1, keepdims=True)
    sigma = 1 / (1 + np.exp(-f[:, 0].astype(np.float64)))
    np.testing.assert_allclose(softmax[:, 1], sigma, rtol=1e-6)
    many = jnp.zeros((2, 4))
    assert as_categorical(many) is many


def test_true_class_probability_multiclass_and_binary():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, np.log(4.0)]], np.float32)
    labels = np.array([1, 0, 0])
    np.testing.assert_allclose(true_class_probability(jnp.asarray(logits), jnp.asarray(labels)),
                               [0.5, 0.75, 0.2], rtol=1e-6)
    f = np.array([[1.5], [-0.5]], np.float32)
    sigma = 1 / (1 + np.exp(-f[:, 0].astype(np.float64)))
    np.testing.assert_allclose(true_class_probability(jnp.asarray(f), jnp.array([1, 0])),
                               [sigma[0], 1 - sigma[1]], rtol=1e-6)


def test_ce_matches_float64_reference_on_extreme_logits():
    rng = np.random.default_rng(0)
    logits = (30 * rng.standard_normal((16, 5))).astype(np.float32)
    labels = rng.integers(0, 5, 16)
    x = logits.astype(np.float64)
    ref = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1) - x[np.arange(16), labels]
    np.testing.assert_allclose(softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                               ref, rtol=1e-5, atol=1e-5)
    f, y = x[:, 0], (labels % 2).astype(np.float64)
    ref_bce = np.logaddexp(0.0, f) - y * f
    bce = sigmoid_cross_entropy(jnp.asarray(logits[:, 0]), jnp.asarray(labels % 2))
    np.testing.assert_allclose(bce, ref_bce, rtol=1e-5, atol=1e-5)
