"""jaxmm.tasks: each loss against a plain numpy computation, outputs, selection direction, errors."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.tasks import Task, selection_score, task_of

RNG = np.random.default_rng(0)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_softmax_and_auto_losses_match_numpy():
    logits = RNG.normal(size=(6, 4))
    y = RNG.integers(0, 4, 6)
    expected = -_log_softmax(logits)[np.arange(6), y]
    for loss in ("auto", "softmax"):
        got = Task("classification", loss, 4).loss(jnp.asarray(logits, jnp.float32), jnp.asarray(y))
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_binary_auto_is_one_sigmoid_logit():
    task = Task("classification", "auto", 2)
    assert task.num_outputs == 1 and Task("classification", "softmax", 2).num_outputs == 2
    f = RNG.normal(size=(5, 1))
    y = RNG.integers(0, 2, 5)
    p = 1 / (1 + np.exp(-f[:, 0]))
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(task.loss(jnp.asarray(f, jnp.float32), jnp.asarray(y)), expected, rtol=1e-5)


def test_sigmoid_multiclass_is_one_vs_rest():
    logits = RNG.normal(size=(5, 3))
    y = RNG.integers(0, 3, 5)
    onehot = np.eye(3)[y]
    p = 1 / (1 + np.exp(-logits))
    expected = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p)).sum(-1)
    got = Task("classification", "sigmoid", 3).loss(jnp.asarray(logits, jnp.float32), jnp.asarray(y))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("loss, fn", [("l1", np.abs), ("mse", np.square)])
def test_regression_losses_match_numpy(loss, fn):
    pred = RNG.normal(size=(7, 1)).astype(np.float32)
    target = RNG.normal(size=7).astype(np.float32)
    task = Task("regression", loss, 1)
    assert task.num_outputs == 1 and task.select_metric == "mae"
    np.testing.assert_allclose(task.loss(jnp.asarray(pred), jnp.asarray(target)), fn(pred[:, 0] - target), rtol=1e-5)


def test_regression_report_adds_per_modality_mae():
    target = RNG.normal(size=50)
    pred = target + RNG.normal(scale=0.1, size=50)
    uni = {"a": target + 1.0}
    report = Task("regression", "l1", 1).report(pred, target, uni)
    assert report["mae"] == pytest.approx(np.mean(np.abs(pred - target)))
    assert report["mae/a"] == pytest.approx(1.0)


def test_selection_score_negates_error_metrics():
    assert selection_score({"acc": 0.7}, "acc") == pytest.approx(0.7)
    assert selection_score({"mae": 0.3}, "mae") == pytest.approx(-0.3)
    assert selection_score({"mae/a": 0.3}, "mae/a") == pytest.approx(-0.3)
    assert np.isnan(selection_score({}, "acc"))


def test_task_of_defaults_and_errors():
    assert task_of("regression", 1) == Task("regression", "l1", 1)
    assert task_of("classification", 3).loss_name == "auto"
    with pytest.raises(ValueError, match="`kind` must be one of"):
        Task("ranking")
    with pytest.raises(ValueError, match="loss of a regression task"):
        Task("regression", "softmax", 1)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        Task("classification", "auto", 1)


def test_reports_of_a_grid_are_each_runs_report():
    rng = np.random.default_rng(0)
    for task, width, labels in ((Task("classification", "softmax", 3), 3, rng.integers(0, 3, (2, 30))),
                                (Task("regression", "l1", 1), 1, rng.normal(size=(2, 30)))):
        pred, uni = rng.normal(size=(2, 30, width)), {"a": rng.normal(size=(2, 30, width))}
        got = task.reports(pred, labels, uni)
        assert got == [task.report(pred[r], labels[r], {"a": uni["a"][r]}) for r in range(2)]
