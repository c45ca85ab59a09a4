"""IIBalance budgets, anchor and probabilistic gate."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.monitors import budgets as iib

LABELS = jnp.arange(90) % 3
PERFECT = 8.0 * jax.nn.one_hot(LABELS, 3)
PARTIAL = 2.0 * jax.nn.one_hot(jnp.where(jnp.arange(90) % 2 == 0, LABELS, 0), 3)
USELESS = jnp.zeros((90, 3))


def test_information_budgets_sum_to_one_and_rank_modalities():
    b = iib.estimate_budgets([PARTIAL, PERFECT, USELESS], LABELS)
    np.testing.assert_allclose(jnp.sum(b), 1.0, rtol=1e-6)
    assert float(b[1]) > float(b[0]) > 0.0
    assert float(b[2]) < 1e-5   # chance-level CE carries no information
    assert int(iib.anchor_modality(b)) == 1
    np.testing.assert_allclose(iib.label_entropy(LABELS, 3), np.log(3), rtol=1e-6)


def test_accuracy_budgets_and_uniform_fallback():
    b = iib.estimate_budgets([PERFECT, PARTIAL], LABELS, method="accuracy")
    acc_partial = float(jnp.mean(jnp.argmax(PARTIAL, -1) == LABELS))
    np.testing.assert_allclose(b, np.array([1.0, acc_partial]) / (1.0 + acc_partial), rtol=1e-6)
    np.testing.assert_allclose(iib.information_budgets([USELESS, USELESS], LABELS), [0.5, 0.5])
    binary = iib.information_budgets([jnp.full((4, 1), 5.0) * jnp.array([[-1], [1], [-1], [1]]),
                                      jnp.zeros((4, 1))], jnp.array([0, 1, 0, 1]))
    np.testing.assert_allclose(binary, [1.0, 0.0], atol=1e-6)


def test_gate_weights_sum_to_one_and_follow_budgets_and_uncertainty():
    budgets = jnp.array([0.7, 0.3])
    logits = [jnp.array([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), jnp.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]])]
    u = jnp.stack([iib.normalized_uncertainty(l) for l in logits], axis=1)
    np.testing.assert_allclose(u[:, 0][1], 1.0, rtol=1e-6)
    w = iib.gate_weights(budgets, u, kappa=3.0)
    np.testing.assert_allclose(jnp.sum(w, axis=1), 1.0, rtol=1e-6)
    assert float(w[0, 0]) > 0.7 and float(w[1, 1]) > 0.3   # the confident modality gains weight
    np.testing.assert_allclose(iib.gate_weights(budgets, jnp.zeros((2, 2))), [[0.7, 0.3]] * 2,
                               rtol=1e-6)
    w_ev = iib.gate_weights(budgets, jnp.zeros((2, 2)), evidence=jnp.array([[0.0, 0.0], [-20.0, 5.0]]))
    np.testing.assert_allclose(jnp.sum(w_ev, axis=1), 1.0, rtol=1e-6)
    assert float(w_ev[1, 1]) > 0.99


def test_gated_log_probs_is_the_mixture():
    logits = [jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([[0.0, 3.0], [1.0, 1.0]])]
    w = jnp.array([[0.25, 0.75], [1.0, 0.0]])
    mix = jax.jit(iib.gated_log_probs)(logits, w)
    expected = sum(w[:, m:m + 1] * jax.nn.softmax(l) for m, l in enumerate(logits))
    np.testing.assert_allclose(jnp.exp(mix), expected, rtol=1e-6)
    np.testing.assert_allclose(jnp.exp(mix).sum(-1), 1.0, rtol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="choose one of 'information', 'accuracy'"):
        iib.estimate_budgets([PERFECT], LABELS, method="shapley")
    with pytest.raises(ValueError, match="same K"):
        iib.information_budgets([PERFECT, PERFECT[:, :2]], LABELS)
    with pytest.raises(ValueError, match="one array of unimodal predictions"):
        iib.accuracy_budgets([], LABELS)
    with pytest.raises(ValueError, match=r"\[B, M\]"):
        iib.gate_weights(jnp.ones(2) / 2, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="two-column logits"):
        iib.normalized_uncertainty(jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="weights"):
        iib.gated_log_probs([PERFECT, PERFECT], jnp.ones((90, 3)) / 3)
