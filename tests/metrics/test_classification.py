import numpy as np
import pytest
from sklearn.metrics import f1_score

from jaxmm.methods.base import average_prediction
from jaxmm.tasks import Task
from jaxmm.metrics.classification import (accuracy, accuracy_by_group, classification_report, classification_reports,
                                          linear_probe, macro_f1, per_class_f1, predict_labels, probe_report, synergy_indicator)


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


def test_report_without_unimodal_heads_has_nan_synergy():
    rep = classification_report(np.array([[1.0], [-1.0]]), np.array([1, 0]), 2)
    assert np.isnan(rep["synergy"]) and rep["acc"] == 1.0


def test_averaged_softmax_ensemble_has_zero_synergy_on_binary_tasks():
    # Both heads wrong means both give the true class probability <= 1/2, hence so does their mean.
    rng = np.random.default_rng(0)
    n = 20000
    logits = {m: rng.normal(scale=rng.choice([0.01, 1.0, 10.0], n))[:, None] for m in ("a", "b")}
    y = rng.integers(0, 2, n)
    fused = np.asarray(average_prediction(logits, Task()))
    uni = [predict_labels(v) for v in logits.values()]
    both_wrong = np.all([p != y for p in uni], axis=0)
    assert both_wrong.sum() > 4000  # the property is exercised on many examples
    assert synergy_indicator(predict_labels(fused), uni, y) == 0.0
    assert classification_report(fused, y, 2, logits)["synergy"] == 0.0


def test_soft_voting_can_beat_both_heads_with_three_classes():
    # Head a ranks class 0 first, head b class 2; their mean ranks class 1 (the label) first.
    probs = {"a": np.log([[0.40, 0.35, 0.25]]), "b": np.log([[0.25, 0.35, 0.40]])}
    fused = np.asarray(average_prediction(probs, Task(num_classes=3)))  # log of the mean probabilities
    np.testing.assert_allclose(np.exp(fused), [[0.325, 0.35, 0.325]], atol=1e-6)
    assert classification_report(fused, np.array([1]), 3, probs)["synergy"] == 1.0


def _signed_features(signs, y, rng):
    return (signs * (2.0 * y - 1.0))[:, None] + 0.01 * rng.normal(size=(len(y), 3))


def test_probe_report_counts_examples_both_probes_get_wrong():
    rng = np.random.default_rng(1)
    y_train, y = rng.integers(0, 2, 200), rng.integers(0, 2, 400)
    train = {m: _signed_features(np.ones(200), y_train, rng) for m in ("a", "b")}
    # The probes learn "sign -> label"; flipping an eval feature's sign makes its probe wrong.
    flip_a, flip_b = rng.random(400) < 0.5, rng.random(400) < 0.3
    evaluation = {"a": _signed_features(np.where(flip_a, -1.0, 1.0), y, rng),
                  "b": _signed_features(np.where(flip_b, -1.0, 1.0), y, rng)}
    fused = (2.0 * y - 1.0)[:, None]   # always right
    rep = probe_report(fused, y, train, y_train, evaluation)
    assert rep["acc/probe/a"] == pytest.approx(1 - flip_a.mean())
    assert rep["acc/probe/b"] == pytest.approx(1 - flip_b.mean())
    assert rep["synergy/probe"] == pytest.approx(np.mean(flip_a & flip_b))
    np.testing.assert_array_equal(linear_probe(train["a"], y_train, evaluation["a"]), np.where(flip_a, 1 - y, y))


def test_probe_bad_inputs():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(x, np.zeros(4, int), x)
    with pytest.raises(ValueError, match="must be positive"):
        linear_probe(x, np.array([0, 1, 0, 1]), x, l2=0.0)
    with pytest.raises(ValueError, match="same, non-empty set of modalities"):
        probe_report(np.zeros(4), np.zeros(4), {"a": x}, np.array([0, 1, 0, 1]), {"b": x})


@pytest.mark.parametrize("classes,width", [(3, 3), (2, 1)])
def test_reports_of_a_grid_are_each_runs_report(classes, width):
    rng = np.random.default_rng(1)
    runs, n = 4, 40
    logits = rng.normal(size=(runs, n, width))
    labels = rng.integers(0, classes, (runs, n))
    uni = {"a": rng.normal(size=(runs, n, width)), "b": rng.normal(size=(runs, n, width))}
    groups = rng.integers(0, 3, (runs, n))
    groups[0] = np.where(groups[0] == 2, 1, groups[0])  # run 0 has an empty group: NaN there
    got = classification_reports(logits, labels, classes, uni, groups, ["u", "v", "w"])
    for r in range(runs):
        pred = predict_labels(logits[r])
        want = {"acc": accuracy(pred, labels[r]), "macro_f1": macro_f1(pred, labels[r], max(classes, 2)),
                "acc/a": accuracy(predict_labels(uni["a"][r]), labels[r]),
                "synergy": synergy_indicator(pred, [predict_labels(u[r]) for u in uni.values()], labels[r]),
                **{f"acc/source/{k}": v for k, v in
                   accuracy_by_group(pred, labels[r], groups[r], ["u", "v", "w"]).items()}}
        for key, value in want.items():
            np.testing.assert_equal(got[r][key], value)
        assert got[r] == pytest.approx(classification_report(logits[r], labels[r], classes, {m: u[r] for m, u in uni.items()},
                                                             groups[r], ["u", "v", "w"]), nan_ok=True)
    assert np.isnan(got[0]["acc/source/w"]) and not np.isnan(got[1]["acc/source/w"])
    # the F1 against scikit-learn, per class
    np.testing.assert_allclose([got[2][f"f1/{c}"] for c in range(max(classes, 2))],
                               f1_score(labels[2], predict_labels(logits[2]), average=None,
                                        labels=list(range(max(classes, 2))), zero_division=0))


def test_reports_refuse_arrays_of_another_shape():
    with pytest.raises(ValueError, match=r"groups cover \[runs, examples\] = \[2, 4\] but the labels \[2, 5\]"):
        classification_reports(np.zeros((2, 5, 3)), np.zeros((2, 5), int), 3, groups=np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="predictions and labels differ in length"):
        classification_report(np.zeros((5, 3)), np.zeros(5, int), 3, {"a": np.zeros((4, 3))})
