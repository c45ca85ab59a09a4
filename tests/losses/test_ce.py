import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import classification_loss, sigmoid_cross_entropy, softmax_cross_entropy


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
