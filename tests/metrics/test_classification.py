import numpy as np
import pytest
from sklearn.metrics import f1_score

from jaxmm.metrics.classification import (accuracy, accuracy_by_group, classification_report, macro_f1,
                                          per_class_f1, predict_labels, synergy_indicator)


def test_predict_labels_binary_and_multiclass():
    np.testing.assert_array_equal(predict_labels(np.array([[0.2], [-0.1]])), [1, 0])
    np.testing.assert_array_equal(predict_labels(np.array([[0.1, 0.7, 0.2]])), [1])


def test_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_allclose(per_class_f1(p, y, 4), f1_score(y, p, average=None))
    assert macro_f1(p, y, 4) == pytest.approx(f1_score(y, p, average="macro"))


def test_synergy_indicator_hand_example():
    y = np.array([0, 1, 1, 0])
    fused = np.array([0, 1, 0, 0])
    uni = [np.array([1, 0, 0, 0]), np.array([1, 0, 1, 1])]
    # example 0: fused right, both wrong -> counts; 1: counts; 2: fused wrong; 3: one unimodal right
    assert synergy_indicator(fused, uni, y) == 0.5


def test_accuracy_by_group_and_report():
    y = np.array([0, 1, 1, 0])
    logits = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    groups = np.array([0, 0, 1, 1])
    assert accuracy_by_group(predict_labels(logits), y, groups, ["a", "b"]) == {"a": 1.0, "b": 0.0}
    rep = classification_report(logits, y, 2, {"x": -logits}, groups, ["a", "b"])
    assert rep["acc"] == 0.5 and rep["acc/x"] == 0.5 and rep["acc/source/a"] == 1.0
    assert rep["synergy"] == 0.5  # examples 0 and 1: fused right, the head wrong


def test_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(np.zeros(3), np.zeros(2))
