"""IIBalance budgets, anchor and probabilistic gate.

Expected values are computed in numpy and each test compiles one program, to keep it fast.
"""
import jax
import numpy as np
import pytest

from jaxmm.monitors import budgets as iib

LABELS = np.arange(90) % 3
EYE = np.eye(3, dtype=np.float32)
PERFECT = 8.0 * EYE[LABELS]
PARTIAL = 2.0 * EYE[np.where(np.arange(90) % 2 == 0, LABELS, 0)]
USELESS = np.zeros((90, 3), np.float32)


def test_budgets_sum_to_one_rank_modalities_and_pick_the_anchor():
    @jax.jit
    def run(partial, perfect, useless, labels):
        info = iib.estimate_budgets([partial, perfect, useless], labels)
        return (info, iib.anchor_modality(info), iib.label_entropy(labels, 3),
                iib.estimate_budgets([perfect, partial], labels, method="accuracy"),
                iib.information_budgets([useless, useless], labels))
    info, anchor, h_y, accuracy, fallback = run(PARTIAL, PERFECT, USELESS, LABELS)
    np.testing.assert_allclose(info.sum(), 1.0, rtol=1e-6)
    assert info[1] > info[0] > 0.0 and info[2] < 1e-5   # chance-level CE carries no information
    assert int(anchor) == 1
    np.testing.assert_allclose(h_y, np.log(3), rtol=1e-6)
    acc_partial = np.mean(PARTIAL.argmax(-1) == LABELS)
    np.testing.assert_allclose(accuracy, np.array([1.0, acc_partial]) / (1.0 + acc_partial),
                               rtol=1e-6)
    np.testing.assert_allclose(fallback, [0.5, 0.5])


def test_binary_heads():
    logits = np.array([[-5.0], [5.0], [-5.0], [5.0]], np.float32)
    budgets = iib.information_budgets([logits, np.zeros((4, 1), np.float32)],
                                      np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(budgets, [1.0, 0.0], atol=1e-5)


def test_gate_weights_sum_to_one_and_follow_budgets_and_uncertainty():
    budgets = np.array([0.7, 0.3], np.float32)
    logits = [np.array([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32),
              np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]], np.float32)]
    evidence = np.array([[0.0, 0.0], [-20.0, 5.0]], np.float32)

    @jax.jit
    def run(budgets, logits):
        u = jax.numpy.stack([iib.normalized_uncertainty(l) for l in logits], axis=1)
        zeros = jax.numpy.zeros((2, 2))
        return (u, iib.gate_weights(budgets, u, kappa=3.0), iib.gate_weights(budgets, zeros),
                iib.gate_weights(budgets, zeros, evidence=evidence))
    u, w, prior_only, with_evidence = run(budgets, logits)
    np.testing.assert_allclose(u[1, 0], 1.0, rtol=1e-6)   # a uniform prediction
    for weights in (w, prior_only, with_evidence):
        np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    assert w[0, 0] > 0.7 and w[1, 1] > 0.3   # the confident modality gains weight
    np.testing.assert_allclose(prior_only, [[0.7, 0.3]] * 2, rtol=1e-6)
    assert with_evidence[1, 1] > 0.99


def test_bad_inputs():
    with pytest.raises(ValueError, match="`method` must be one of 'information', 'accuracy'"):
        iib.estimate_budgets([PERFECT], LABELS, method="shapley")
    with pytest.raises(ValueError, match="same K"):
        iib.information_budgets([PERFECT, PERFECT[:, :2]], LABELS)
    with pytest.raises(ValueError, match="one array of unimodal predictions"):
        iib.accuracy_budgets([], LABELS)
    with pytest.raises(ValueError, match=r"\[B, M\]"):
        iib.gate_weights(np.ones(2) / 2, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="two-column logits"):
        iib.normalized_uncertainty(np.zeros((4, 1)))
