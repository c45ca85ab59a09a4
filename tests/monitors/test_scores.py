"""Per-modality scores: true-class probability, its batch sum (OGM-GE) and mean (RedReg)."""
import jax.numpy as jnp
import numpy as np

from jaxmm.losses.ce import true_class_probability
from jaxmm.monitors.scores import confidence, discrepancy_score


def test_scores_by_hand():
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, np.log(4.0)]])
    labels = jnp.array([1, 0, 0])
    p = [0.5, 0.75, 0.2]
    np.testing.assert_allclose(true_class_probability(logits, labels), p, rtol=1e-6)
    np.testing.assert_allclose(discrepancy_score(logits, labels), sum(p), rtol=1e-6)
    np.testing.assert_allclose(confidence(logits, labels), np.mean(p), rtol=1e-6)
    # Padded examples (valid = 0) are left out of the sum.
    np.testing.assert_allclose(discrepancy_score(logits, labels, jnp.array([1.0, 0.0, 1.0])), 0.7, rtol=1e-6)


def test_confidence_leaves_out_padding():
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, 9.0]])
    labels = jnp.array([1, 0, 0])
    np.testing.assert_allclose(confidence(logits, labels, jnp.array([1.0, 1.0, 0.0])), 0.625, rtol=1e-6)
