import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from jaxmm.metrics.regression import KEYS, regression_report


def mmim_reference(preds, truth):
    """declare-lab/Multimodal-Infomax ``eval_mosei_senti``, written out (it passes preds as y_true to sklearn)."""
    non_zeros = np.array([i for i, e in enumerate(truth) if e != 0])
    mult = lambda a, b: np.sum(np.round(a) == np.round(b)) / float(len(b))
    return {
        "mae": np.mean(np.absolute(preds - truth)),
        "pearson_r": np.corrcoef(preds, truth)[0][1],
        "acc7": mult(np.clip(preds, -3.0, 3.0), np.clip(truth, -3.0, 3.0)),
        "acc5": mult(np.clip(preds, -2.0, 2.0), np.clip(truth, -2.0, 2.0)),
        "f1_nonzero": f1_score(preds[non_zeros] > 0, truth[non_zeros] > 0, average="weighted"),
        "acc2_nonzero": accuracy_score(preds[non_zeros] > 0, truth[non_zeros] > 0),
        "acc2_nonneg": accuracy_score(preds >= 0, truth >= 0),
        "f1_nonneg": f1_score(preds >= 0, truth >= 0, average="weighted"),
    }


def independent(pred, target):
    """The same metrics computed another way (Python's round, numpy's corrcoef, sklearn's F1)."""
    classes = lambda x, b: np.array([round(float(v)) for v in np.clip(x, -b, b)])
    keep = target != 0
    return {
        "mae": np.abs(pred - target).mean(),
        "mse": np.square(pred - target).mean(),
        "pearson_r": np.corrcoef(pred, target)[0, 1],
        "acc2_nonneg": np.mean((pred < 0) == (target < 0)),
        "f1_nonneg": f1_score(target >= 0, pred >= 0, average="weighted"),
        "acc2_nonzero": np.mean((pred[keep] <= 0) == (target[keep] < 0)),
        "f1_nonzero": f1_score(target[keep] > 0, pred[keep] > 0, average="weighted"),
        "acc7": np.mean(classes(pred, 3) == classes(target, 3)),
        "acc5": np.mean(classes(pred, 2) == classes(target, 2)),
    }


def sentiment_like(n, seed):
    """MOSI-like data: targets are means of 3 integer ratings in [-3, 3] (exact zeros, .5-free thirds)
    plus halves, predictions noisy and sometimes exactly on a class boundary."""
    rng = np.random.default_rng(seed)
    target = np.concatenate([rng.integers(-3, 4, (n // 2, 3)).mean(1), rng.integers(-7, 8, n - n // 2) / 2])
    pred = target + rng.normal(0, 1.0, n)
    pred[::17] = np.round(pred[::17] * 2) / 2  # some ties at .5 and exact zeros
    pred[::23] = 0.0
    return pred, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_an_independent_numpy_and_sklearn_computation(seed):
    pred, target = sentiment_like(501, seed)
    assert (target == 0).any() and (pred == 0).any() and np.any(np.abs(pred % 1) == 0.5)
    report = regression_report(pred, target)
    assert tuple(report) == KEYS and all(type(v) is float for v in report.values())
    for key, value in independent(pred, target).items():
        assert report[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 3])
def test_f1_support_pred_reproduces_the_mmim_script(seed):
    pred, target = sentiment_like(400, seed)
    pred = pred + 0.7  # biased predictions, so predicted and true class counts differ
    report = regression_report(pred, target, f1_support="pred")
    for key, value in mmim_reference(pred, target).items():
        assert report[key] == pytest.approx(value, abs=1e-12), key
    textbook = regression_report(pred, target)
    assert textbook["f1_nonneg"] != pytest.approx(report["f1_nonneg"], abs=1e-6)
    assert {k: v for k, v in textbook.items() if not k.startswith("f1")} == \
        {k: v for k, v in report.items() if not k.startswith("f1")}


def test_hand_computed_case():
    pred = np.array([-1.2, 0.0, 2.6, 0.4, -0.2])
    target = np.array([-1.0, 0.0, 3.4, -0.6, 0.0])
    r = regression_report(pred, target)
    assert r["mae"] == pytest.approx(0.44) and r["mse"] == pytest.approx(0.344)
    assert r["acc2_nonneg"] == pytest.approx(0.6)  # >= 0 calls: FTTTF vs FTTFT
    assert r["f1_nonneg"] == pytest.approx((3 * 2 / 3 + 2 * 0.5) / 5)  # F1(T)=4/6, F1(F)=2/4
    assert r["acc2_nonzero"] == pytest.approx(2 / 3)  # targets -1.0, 3.4, -0.6: calls F,T,T vs F,T,F
    assert r["f1_nonzero"] == pytest.approx(2 / 3)
    assert r["acc7"] == pytest.approx(0.8)  # classes -1,0,3,0,0 vs -1,0,3,-1,0
    assert r["acc5"] == pytest.approx(0.8)  # 2.6 and 3.4 both clip to 2
    dp, dt = pred - pred.mean(), target - target.mean()
    assert r["pearson_r"] == pytest.approx(np.sum(dp * dt) / np.sqrt(np.sum(dp ** 2) * np.sum(dt ** 2)))


def test_weighted_f1_support_by_hand():
    pred, target = np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 2.0, 0.5, -1.0])
    # class "positive": TP 3, predicted 4, true 3 -> F1 6/7; class "negative": never predicted -> F1 0
    assert regression_report(pred, target)["f1_nonzero"] == pytest.approx(3 / 4 * 6 / 7)
    assert regression_report(pred, target, f1_support="pred")["f1_nonzero"] == pytest.approx(6 / 7)
    assert regression_report(pred, target)["acc2_nonzero"] == pytest.approx(0.75)


def test_rounding_ties_are_half_to_even_and_zero_is_non_negative():
    r = regression_report(np.array([2.5, -0.5, 0.5, 3.7, -9.0]), np.array([2.0, 0.0, 0.0, 3.0, -3.0]))
    assert r["acc7"] == 1.0  # 2.5 -> 2, ±0.5 -> 0, 3.7 -> 3, -9 -> -3
    assert r["acc5"] == 1.0
    r = regression_report(np.array([0.0, -0.0, 1.0]), np.array([0.0, 2.0, -1.0]))
    assert r["acc2_nonneg"] == pytest.approx(2 / 3)  # a 0 prediction of a 0 target is right
    assert r["acc2_nonzero"] == 0.0  # pred 0 is not a positive call; pred 1 for target -1 is wrong


def test_column_vectors_and_integer_inputs_equal_flat_floats():
    pred, target = sentiment_like(60, 5)
    flat = regression_report(pred, target)
    assert regression_report(pred[:, None], target[:, None]) == flat
    assert regression_report(pred.astype(np.float32)[:, None], target) == pytest.approx(flat, abs=1e-6)
    assert regression_report([1, -2, 0], [1, -1, 2])["acc7"] == pytest.approx(1 / 3)


def test_degenerate_inputs_give_nan():
    r = regression_report(np.full(4, 0.3), np.array([-1.0, 0.0, 1.0, 2.0]))
    assert np.isnan(r["pearson_r"]) and r["mae"] == pytest.approx(np.mean(np.abs(0.3 - np.array([-1, 0, 1, 2]))))
    assert np.isnan(regression_report(np.array([1.0, 2.0]), np.array([1.0, 1.0]))["pearson_r"])
    assert np.isnan(regression_report(np.array([1.0]), np.array([1.0]))["pearson_r"])
    r = regression_report(np.array([0.5, -0.5]), np.zeros(2))
    assert np.isnan(r["acc2_nonzero"]) and np.isnan(r["f1_nonzero"])
    assert r["acc2_nonneg"] == 0.5 and r["acc7"] == 1.0
    for bad in (np.nan, np.inf):
        r = regression_report(np.array([0.5, bad]), np.array([1.0, 2.0]))
        assert set(r) == set(KEYS) and all(np.isnan(v) for v in r.values())


@pytest.mark.parametrize("pred, target, message", [
    (np.zeros((3, 2)), np.zeros(3), r"pred has shape \(3, 2\); regression_report takes \[N\] or \[N, 1\] arrays"),
    (np.zeros(3), np.zeros((3, 1, 1)), r"target has shape \(3, 1, 1\)"),
    (np.float64(1.0), np.zeros(1), r"pred has shape \(\)"),
    (np.zeros(3), np.zeros(4), "pred has 3 examples but target has 4"),
    (np.zeros(0), np.zeros(0), "needs at least one example"),
    (np.zeros(2), np.array([0.0, np.nan]), "target has 1 non-finite values"),
    (np.array(["a", "b"]), np.zeros(2), "pred has dtype <U1"),
])
def test_bad_inputs_raise_one_line_errors(pred, target, message):
    with pytest.raises(ValueError, match=message) as e:
        regression_report(pred, target)
    assert "\n" not in str(e.value)


def test_bad_f1_support():
    with pytest.raises(ValueError, match="f1_support must be 'target' or 'pred', got 'macro'"):
        regression_report(np.zeros(2), np.zeros(2), f1_support="macro")
