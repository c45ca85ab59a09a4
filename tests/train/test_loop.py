import json
import os

import numpy as np
import pytest

from jaxmm.data.types import ArrayDataset, DatasetSplits
from jaxmm.methods import get_method
from jaxmm.train.loop import fit

from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def test_fit_learns_and_writes_outputs(tmp_path):
    r = fit(get_method("vanilla"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=15),
            run_dir=str(tmp_path / "run"))
    assert all(t["acc"] > 0.6 for t in r.test)  # 3 classes: chance is 1/3
    assert r.trainer.traces == 1  # the padded last batch reuses the compiled step
    for f in ("metrics.jsonl", "results.json", "curves.png", "modalities.png", "tensorboard"):
        assert os.path.exists(tmp_path / "run" / f)
    assert not os.path.exists(tmp_path / "run" / "method_logs.png")  # vanilla logs nothing per step
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["runs"]) == 2 and "acc" in results["test_summary"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 16))  # 1-based: epochs trained


def test_select_best_keeps_the_best_validation_epoch():
    r = fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=6, select="best"))
    val_curve = [h["val/acc"][0] for h in r.history]
    assert r.selected_epoch[0] == r.history[int(np.argmax(val_curve))]["epoch"] == int(np.argmax(val_curve)) + 1
    assert r.val[0]["acc"] == pytest.approx(max(val_curve))


def test_early_stopping_saves_the_epoch_it_stopped_at(tmp_path):
    from jaxmm.train.checkpoint import Checkpointer

    r = fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT,
            train_cfg(epochs=50, patience=2, checkpoint_every=100, tensorboard=False), run_dir=str(tmp_path / "r"))
    assert len(r.history) < 50
    assert Checkpointer(str(tmp_path / "r")).latest_epoch() == len(r.history)


def test_ensemble_and_unimodal_run():
    for method in (get_method("ensemble"), get_method("unimodal", modality="a")):
        r = fit(method, [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=10))
        assert r.test[0]["acc"] > 0.5


def _with(splits, **changes):
    train = splits.train
    return DatasetSplits(ArrayDataset(**{**train.__dict__, **changes}), splits.val, splits.test)


def test_labels_out_of_range_are_reported():
    s = tiny_splits()
    bad = _with(s, label=np.where(np.arange(len(s.train)) == 3, 7, s.train.label))
    with pytest.raises(ValueError, match="labels outside"):
        fit(get_method("vanilla"), [bad], [0], MODEL, OPT, train_cfg())


def test_nan_inputs_are_reported():
    s = tiny_splits()
    a = s.train.inputs["a"].copy()
    a[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf values in 1 examples"):
        fit(get_method("vanilla"), [_with(s, inputs={**s.train.inputs, "a": a})], [0], MODEL, OPT, train_cfg())


def test_wrong_modality_shape_is_reported():
    s = tiny_splits()
    bad = _with(s, inputs={**s.train.inputs, "a": np.zeros((40, 5), np.float32)})
    with pytest.raises(ValueError, match="per-example shape"):
        fit(get_method("vanilla"), [bad], [0], MODEL, OPT, train_cfg())


def test_unknown_hparam_and_mismatched_grid():
    with pytest.raises(ValueError, match="no hyper-parameter"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(), hparams=[{"lambda": 1}])
    with pytest.raises(ValueError, match="one per seed"):
        fit(get_method("vanilla"), [tiny_splits(), tiny_splits()], [0, 1, 2], MODEL, OPT, train_cfg())


def test_diverging_loss_is_reported():
    from jaxmm.train.config import OptimizerConfig

    s = tiny_splits()
    huge = _with(s, inputs={**s.train.inputs, "a": s.train.inputs["a"] * 1e30})
    with pytest.raises(FloatingPointError, match="training loss diverged at epoch 1: run 0 .seed 0. has loss nan.*"
                                                 "lower optimizer.lr"):
        fit(get_method("vanilla"), [huge], [0], MODEL, OptimizerConfig(name="sgd", lr=1e10), train_cfg())


def test_a_loss_that_explodes_in_the_first_epoch_stops_the_run_or_warns():
    from jaxmm.train.config import OptimizerConfig

    opt = OptimizerConfig(name="adam", lr=1e6)
    with pytest.raises(FloatingPointError, match=r"diverged at epoch 1: run 0 \(seed 0\) rose to .* from its initial "
                                                 r"loss .*train.on_divergence=warn"):
        fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, opt, train_cfg(epochs=2))
    with pytest.warns(UserWarning, match="diverged at epoch 1"):
        r = fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, opt, train_cfg(epochs=2, on_divergence="warn"))
    assert len(r.history) == 2


def _with_frames(splits, side=8):
    """``splits`` plus a uint8 frame modality ``v`` [N, 2, side, side, 3] whose brightness encodes the label."""
    def add(ds):
        rng = np.random.default_rng(len(ds))
        clip = (ds.label[:, None, None, None, None] * 100 + rng.integers(0, 40, (len(ds), 2, side, side, 3)))
        return ArrayDataset({**ds.inputs, "v": clip.astype(np.uint8)}, ds.label, ds.num_classes, name=ds.name)

    return DatasetSplits(add(splits.train), add(splits.val), add(splits.test))


def test_frame_augmentation_names_are_checked_against_the_data():
    splits = _with_frames(tiny_splits())
    with pytest.raises(ValueError, match="names 'video', which is not an input"):
        fit(get_method("vanilla"), [splits], [0], MODEL, OPT, train_cfg(epochs=1, augment_frames=("video",)))
    with pytest.raises(ValueError, match="'a' must be uint8 frames"):
        fit(get_method("vanilla"), [splits], [0], MODEL, OPT, train_cfg(epochs=1, augment_frames=("a",)))


def test_regression_run_reports_sentiment_metrics_that_match_numpy():
    from jaxmm.data.synthetic import regression
    from jaxmm.train.batching import stack_runs

    splits = regression.splits(0, sizes={"train": 256, "val": 64, "test": 128})
    r = fit(get_method("vanilla"), [splits], [0], MODEL, OPT, train_cfg(epochs=4, select="best", batch_size=64))
    state = r.state._replace(params=r.params, method_state=r.method_state)
    pred, _ = r.trainer.predict(state, stack_runs([splits.test]), 4096)
    p, y = pred[0, :, 0].astype(np.float64), splits.test.label.astype(np.float64)
    got = r.test[0]
    assert got["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert got["pearson_r"] == pytest.approx(np.corrcoef(p, y)[0, 1], rel=1e-4)
    assert got["acc2_nonneg"] == pytest.approx(np.mean((p >= 0) == (y >= 0)))
    nz = y != 0
    assert got["acc2_nonzero"] == pytest.approx(np.mean((p[nz] > 0) == (y[nz] > 0)))
    assert got["acc7"] == pytest.approx(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(y, -3, 3))))
    pos, true = p >= 0, y >= 0  # weighted F1 of the non-negative convention, by hand
    f1 = [2 * np.sum((pos == c) & (true == c)) / (np.sum(pos == c) + np.sum(true == c)) for c in (False, True)]
    weights = [np.mean(true == c) for c in (False, True)]
    assert got["f1_nonneg"] == pytest.approx(np.dot(f1, weights), rel=1e-6)
    val_mae = [rec["val/mae"][0] for rec in r.history]
    assert r.selected_epoch[0] == int(np.argmin(val_mae)) + 1  # selection minimises the error


def test_classification_only_method_refuses_regression():
    from jaxmm.data.synthetic import regression

    splits = regression.splits(0, sizes={"train": 32, "val": 16, "test": 16})
    with pytest.raises(ValueError, match="supports \\['classification'\\] tasks, not regression"):
        fit(get_method("ogm_ge"), [splits], [0], MODEL, OPT, train_cfg(epochs=1))


def test_plateau_steps_pytorch_reduce_lr_on_plateau_on_the_validation_loss_and_survives_a_resume(
        tmp_path, compilation_cache, unoptimised_compile):
    import jax

    from jaxmm.train.config import OptimizerConfig

    from .test_optim import TorchPlateau

    opt = OptimizerConfig("adam", 1e-2, schedule="plateau", plateau_factor=0.5, plateau_patience=0,
                          plateau_threshold=0.2)
    method, kw = get_method("vanilla"), dict(hparams=[{"lr": 1e-2}, {"lr": 3e-2}])
    straight = fit(method, [tiny_splits()], [0, 1], MODEL, opt, train_cfg(epochs=5), **kw)
    for r, lr in enumerate((1e-2, 3e-2)):
        torch = TorchPlateau(lr, 0.5, 0, 0.2)
        expected = [torch.step(h["val/loss"][r]) for h in straight.history]
        np.testing.assert_allclose([h["lr"][r] for h in straight.history], expected, rtol=1e-6)
    assert straight.history[-1]["lr"][0] < 1e-2 / 2  # it decayed at least twice
    run = str(tmp_path / "run")
    fit(method, [tiny_splits()], [0, 1], MODEL, opt, train_cfg(epochs=2, checkpoint_every=1), run_dir=run, **kw)
    resumed = fit(method, [tiny_splits()], [0, 1], MODEL, opt, train_cfg(epochs=5, checkpoint_every=1),
                  run_dir=run, resume=True, **kw)
    np.testing.assert_array_equal([h["lr"] for h in resumed.history], [h["lr"] for h in straight.history])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 straight.state.params, resumed.state.params)



def test_reports_loss_is_each_runs_mean_cross_entropy():
    from jaxmm.tasks import Task
    from jaxmm.train.loop import _reports, _run_losses

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 50))
    for task, width in ((Task("classification", "softmax", 3), 3), (Task("classification", "auto", 2), 1)):
        y = labels % task.num_classes
        logits = rng.normal(size=(2, 50, width)).astype(np.float32)
        reports = _reports(task, logits, y, {}, None, None)
        z = logits.astype(np.float64)
        if width == 1:  # binary: log(1 + e^z) - y z
            expected = np.logaddexp(0, z[..., 0]) - y * z[..., 0]
        else:
            expected = np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, y[..., None], -1)[..., 0]
        assert [r["loss"] for r in reports] == pytest.approx(expected.mean(1), rel=1e-5)
    before = _run_losses._cache_size()
    _reports(Task("classification", "softmax", 3), logits.repeat(3, -1), labels, {}, None, None)
    assert _run_losses._cache_size() == before  # an equal task reuses the compiled program
