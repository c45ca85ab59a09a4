"""Gated mixture of categorical predictions, against a float64 numpy mixture."""
import jax
import numpy as np
import pytest

from jaxmm.losses.mixture import gated_log_probs


def test_gated_log_probs_is_the_mixture():
    logits = [np.array([[2.0, 0.0], [0.0, 1.0]], np.float32),
              np.array([[0.0, 3.0], [1.0, 1.0]], np.float32)]
    w = np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)
    mix = np.exp(np.asarray(jax.jit(gated_log_probs)(logits, w)))
    softmax = lambda l: np.exp(l.astype(np.float64)) / np.exp(l.astype(np.float64)).sum(-1, keepdims=True)
    expected = sum(w[:, m:m + 1] * softmax(l) for m, l in enumerate(logits))
    np.testing.assert_allclose(mix, expected, rtol=1e-6)
    np.testing.assert_allclose(mix.sum(-1), 1.0, rtol=1e-6)


def test_bad_inputs():
    perfect = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="weights"):
        gated_log_probs([perfect, perfect], np.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="two-column logits"):
        gated_log_probs([np.zeros((4, 1), np.float32)], np.ones((4, 1)))
