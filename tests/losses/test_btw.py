"""BTW weights: instance KL, min-max normalisation, modality MI, product and smoothing.

Expected values are computed in numpy and each test compiles few programs, to keep it fast.
"""
import jax
import numpy as np
import pytest

from jaxmm.losses import btw


def _one_hot(labels, k):
    return np.eye(k, dtype=np.float32)[labels]


def test_minmax_hits_both_extremes_and_handles_degenerate_and_excluded_entries():
    values = np.array([[0.2, 5.0], [0.6, 1.0], [1.0, 3.0], [0.4, 1.0]], np.float32)
    flat = np.array([[1.0, 2.0], [1.0, 9.0], [1.0, 4.0]], np.float32)
    where = np.array([[True, True], [True, False], [True, True]])
    out, out_flat = jax.jit(lambda v, f, w: (btw.minmax_normalize(v),
                                             btw.minmax_normalize(f, where=w, degenerate=1e-4))
                            )(values, flat, where)
    np.testing.assert_allclose(out.min(0), [0.0, 0.0])
    np.testing.assert_allclose(out.max(0), [1.0, 1.0])
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(out_flat[:, 0], [1e-4] * 3)
    np.testing.assert_allclose(out_flat[:, 1], [0.0, 0.0, 1.0])   # the excluded 9 is ignored


def test_categorical_and_gaussian_kl_values():
    uni = np.log(np.array([[0.5, 0.5], [0.9, 0.1]], np.float32))
    mm = np.log(np.array([[0.5, 0.5], [0.5, 0.5]], np.float32))
    u, m = np.array([0.0, 1.0, 0.3], np.float32), np.array([0.0, 0.0, 0.5], np.float32)

    @jax.jit
    def run(uni, mm, u, m):
        return (btw.btw_kl(uni, mm), btw.btw_kl(u, m, task="regression", log_sigma_q=np.log(2.0)),
                btw.btw_kl(u, u, task="regression", log_sigma_q=np.log(0.1)),
                btw.btw_kl(u[:, None], m[:, None], where=np.array([True, False, True])))
    categorical, gaussian, same, binary = run(uni, mm, u, m)
    expected = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    np.testing.assert_allclose(categorical, [0.0, expected], atol=1e-6)
    sp, sq = 0.1, 2.0
    expected = np.log(sq / sp) + (sp**2 + (u - m) ** 2) / (2 * sq**2) - 0.5
    np.testing.assert_allclose(gaussian, np.maximum(expected, 1e-5), rtol=1e-5)
    np.testing.assert_allclose(same, 1e-5)   # KL 0, floored at 1e-5 as in the code
    sig = lambda x: 1 / (1 + np.exp(-x))
    p, q = sig(u), sig(m)
    bern = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    np.testing.assert_allclose(binary, [bern[0], 0.0, bern[2]], rtol=1e-4, atol=1e-7)


def test_target_weights_are_kl_times_mi_on_hand_made_predictions():
    labels = np.arange(60) % 3
    mm = 4.0 * _one_hot(labels, 3)
    aligned = mm + np.linspace(0, 1, 60, dtype=np.float32)[:, None] * np.eye(3, dtype=np.float32)[0]
    unrelated = 4.0 * _one_hot((np.arange(60) // 3) % 3, 3)
    present = np.ones((60, 2), bool)
    present[3, 1] = False

    @jax.jit
    def run(preds, mm, present):
        return (btw.btw_target_weights(preds, mm, combine="kl"), btw.btw_target_weights(preds, mm),
                [btw.modality_mi(p, mm) for p in preds],
                btw.btw_target_weights(preds, mm, present=present))
    kl_only, weights, mi, masked = run([aligned, unrelated], mm, present)
    np.testing.assert_allclose(kl_only.min(0), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(kl_only.max(0), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(weights, kl_only * np.stack(mi), rtol=1e-6)
    assert mi[0] > 0.9 and mi[1] < 0.05   # log 3 ≈ 1.10 vs independent predicted classes
    assert masked[3, 1] == 0.0 and masked[:, 1].max() > 0.0   # a missing modality weighs 0


def test_regression_weights_use_ksg_and_any_number_of_modalities():
    rng = np.random.default_rng(0)
    mm = rng.normal(size=120).astype(np.float32)
    noise = rng.normal(size=(3, 120)).astype(np.float32)
    preds = [mm + 0.1 * noise[0], noise[1], mm + 0.5 * noise[2]]
    weights, mi = jax.jit(lambda p, m: (btw.btw_target_weights(p, m, task="regression"),
                                        [btw.modality_mi(x, m, task="regression") for x in p]))(
        preds, mm)
    assert weights.shape == (120, 3)
    assert mi[0] > mi[2] > mi[1] >= 1e-5
    np.testing.assert_allclose(weights.max(0), mi, rtol=1e-5)


def test_smoothing_and_schedule():
    schedule = btw.btw_schedule_init()
    target = np.array([[0.0, 1.0], [0.5, 0.2], [1.0, 0.0]], np.float32)
    np.testing.assert_allclose(btw.btw_smooth_weights(np.ones((3, 2)), target, schedule),
                               0.5 * target + 0.5)
    update = jax.jit(btw.btw_schedule_update)
    schedule = update(schedule, 2.0, refreshed=False)   # epoch 1: only the best loss moves
    np.testing.assert_allclose([schedule.smooth, schedule.best_loss], [0.5, 2.0])
    schedule = update(schedule, 3.0, refreshed=True)    # worse than the best: s up
    np.testing.assert_allclose([schedule.smooth, schedule.best_loss], [0.55, 2.0])
    schedule = update(schedule, 1.0, refreshed=True)    # better: s down
    np.testing.assert_allclose([schedule.smooth, schedule.best_loss], [0.5, 1.0], rtol=1e-6)
    capped = update(btw.BTWSchedule(np.float32(0.98), np.float32(0.0)), 1.0, refreshed=True)
    assert float(capped.smooth) == 1.0
    assert [btw.btw_refresh_due(e) for e in range(1, 11)].count(True) == 2


def test_bad_inputs():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="^`task` must be one of 'classification', 'regression'; got 'ordinal'.$"):
        btw.btw_kl(x, x, task="ordinal")
    with pytest.raises(ValueError, match="same shape"):
        btw.btw_kl(x, x[:, :2])
    with pytest.raises(ValueError, match=r"\[N\] or \[N, 1\]"):
        btw.btw_kl(x, x, task="regression")
    with pytest.raises(ValueError, match="combine"):
        btw.btw_target_weights([x], x, combine="mi")
    with pytest.raises(ValueError, match="use 'ksg' for regression"):
        btw.modality_mi(x[:, 0], x[:, 0], task="regression", estimator="plugin")
    with pytest.raises(ValueError, match=r"present must be \[N, M\]"):
        btw.btw_target_weights([x, x], x, present=np.ones((4, 3), bool))
    with pytest.raises(ValueError, match="smooth"):
        btw.btw_schedule_init(1.5)
    with pytest.raises(ValueError, match="must match"):
        btw.btw_smooth_weights(x, x[:2], btw.btw_schedule_init())
