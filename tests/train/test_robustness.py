"""jaxmm.train.robustness: metric vs dropped and noised modalities, checked against numpy on the loaded run."""
import json
import shutil

import numpy as np
import pytest
from test_evaluate import trained_run

from jaxmm.data.types import ArrayDataset, DatasetSplits
from jaxmm.tasks import task_of
from jaxmm.train.config import RunConfig
from jaxmm.train.evaluate import load_run
from jaxmm.train.robustness import dropped, noised, parse_levels, robustness, train_statistics, write_robustness


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_run(str(trained_run(tmp_path_factory)))


def _acc(loaded, changed):
    """numpy float64 accuracy of every run on its test split with ``changed`` (modality -> per-run inputs)."""
    tests = [s.test for s in loaded.splits]
    pred = loaded.predict_runs({m: np.stack(changed.get(m, [t.inputs[m] for t in tests])) for m in loaded.modalities})
    return np.asarray([np.mean(np.argmax(p, -1) == t.label, dtype=np.float64) for p, t in zip(pred, tests)])


def test_level_zero_is_clean_drop_is_zeroed_inputs_and_noise_is_the_seeded_pattern(loaded):
    result = robustness(loaded, levels=(0, 1), fill="zero", seed=3)
    clean = [r["acc"] for r in loaded.evaluate("test")]
    np.testing.assert_array_equal(result.clean, clean)
    for k, m in enumerate(loaded.modalities):
        np.testing.assert_array_equal(result.noise[m][0], clean)
        zeroed = [np.zeros_like(s.test.inputs[m]) for s in loaded.splits]
        np.testing.assert_array_equal(result.drop[m], _acc(loaded, {m: zeroed}))
        noisy = [s.test.inputs[m] + np.float32(np.std(s.train.inputs[m].astype(np.float64)))
                 * np.random.default_rng([3, r, k]).standard_normal(s.test.inputs[m].shape, np.float32)
                 for r, s in enumerate(loaded.splits)]
        np.testing.assert_array_equal(result.noise[m][1], _acc(loaded, {m: noisy}))
    assert result.metric == "acc" and result.noise["strong"].shape == (2, 2)


def test_mean_fill_is_the_train_mean_per_feature(loaded):
    result = robustness(loaded, levels=(0,), fill="mean")
    for m in loaded.modalities:
        means = [s.train.inputs[m].astype(np.float64).mean(0) for s in loaded.splits]
        filled = [np.broadcast_to(mean.astype(np.float32), s.test.inputs[m].shape)
                  for mean, s in zip(means, loaded.splits)]
        np.testing.assert_array_equal(result.drop[m], _acc(loaded, {m: filled}))
        got = dropped(loaded.splits[0].test.inputs[m], "mean", train_statistics(loaded.splits[0].train.inputs[m])[0])
        np.testing.assert_allclose(got, filled[0], rtol=1e-6)
        assert got.dtype == np.float32 and not np.allclose(got, 0)


def test_statistics_skip_non_finite_values_and_integer_inputs_stay_in_range():
    x = np.array([[1.0, -np.inf], [3.0, 4.0], [5.0, 8.0]], np.float32)
    mean, std = train_statistics(x)
    np.testing.assert_allclose(mean, [3.0, 6.0])
    np.testing.assert_allclose(std, np.std([1.0, 3.0, 4.0, 5.0, 8.0]))
    frames = np.array([[10, 250]], np.uint8)
    np.testing.assert_array_equal(dropped(frames, "mean", np.array([100.6, 3.2])), [[101, 3]])
    np.testing.assert_array_equal(noised(frames, np.array([[-2.0, 1.0]], np.float32), 10.0), [[0, 255]])
    assert noised(frames, np.ones((1, 2), np.float32), 0.0) is frames


def test_json_figure_and_table_are_written(loaded, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(loaded.path, copy)
    run = load_run(str(copy))
    result = robustness(run, levels=(0, 0.5, 2), fill="zero")
    paths = write_robustness(run, result)
    assert paths == [str(copy / "robustness.json"), str(copy / "robustness.png")]
    record = json.loads((copy / "robustness.json").read_text())
    assert record["levels"] == [0.0, 0.5, 2.0] and record["seeds"] == [0, 1] and record["metric"] == "acc"
    weak = record["modalities"]["weak"]
    np.testing.assert_allclose(weak["noise"]["mean"], np.mean(weak["noise"]["per_run"], 1))
    np.testing.assert_allclose(weak["drop"]["std"], np.std(weak["drop"]["per_run"]))
    assert weak["drop"]["per_run"] == result.drop["weak"].tolist()
    assert (copy / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = result.table().splitlines()
    assert table[2] == "| modality | noise 0 | noise 0.5 | noise 2 | dropped (zero) |"
    assert [line.split(" |")[0] for line in table[4:]] == ["| strong", "| weak"]


class LinearRegressionRun:
    """A stand-in for a loaded regression run: prediction = mean of every input feature (no training)."""

    modalities = ("a", "b")
    task = task_of("regression", 1)
    config = RunConfig()  # MLP encoders: noise on every entry

    def __init__(self):
        rng = np.random.default_rng(0)

        def split(n, shift):
            inputs = {m: (rng.normal(size=(n, 3)) + shift).astype(np.float32) for m in self.modalities}
            return ArrayDataset(inputs, rng.normal(size=n).astype(np.float32), 1, task="regression")

        self.splits = [DatasetSplits(split(12, 1.0), split(6, 0.0), split(6, 0.0)) for _ in range(2)]

    def predict_runs(self, inputs):
        return sum(np.asarray(x, np.float64).mean(-1, keepdims=True) for x in inputs.values()) / 2


def test_regression_curves_are_the_mae_of_the_changed_predictions():
    run = LinearRegressionRun()
    result = robustness(run, levels=(0, 2), fill="mean", split="val", seed=1)
    assert result.metric == "mae"
    for r, s in enumerate(run.splits):
        a, b, y = s.val.inputs["a"].astype(np.float64), s.val.inputs["b"].astype(np.float64), s.val.label
        mae = lambda x_a: np.mean(np.abs((x_a.mean(-1) + b.mean(-1)) / 2 - y))
        assert result.clean[r] == pytest.approx(mae(a), rel=1e-6)
        assert result.drop["a"][r] == pytest.approx(mae(np.broadcast_to(s.train.inputs["a"].mean(0), a.shape)),
                                                    rel=1e-6)
        z = np.random.default_rng([1, r, 0]).standard_normal(a.shape, np.float32)
        noisy = a + 2 * np.std(s.train.inputs["a"].astype(np.float64)) * z
        assert result.noise["a"][1, r] == pytest.approx(mae(noisy), rel=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda run: parse_levels("0,x"), "--levels '0,x': give comma-separated non-negative numbers"),
    (lambda run: parse_levels("0,-1"), r"noise levels must be non-negative numbers, e.g. 0,0.5,1,2; got \[0.0, -1.0\]"),
    (lambda run: robustness(run, fill="median"), "fill must be one of \\('zero', 'mean'\\), got 'median'"),
    (lambda run: robustness(run, split="train"), "split must be 'test' or 'val', got 'train'"),
])
def test_bad_arguments_are_named(loaded, call, message):
    with pytest.raises(ValueError, match=message):
        call(loaded)


def test_noise_support_keeps_sequence_padding_and_the_mask_flag():
    from jaxmm.train.robustness import noise_support

    x = np.zeros((2, 4, 3), np.float32)
    x[0, 2:] = 1.0  # two left-padded steps
    x[1, :] = 2.0
    support = np.broadcast_to(noise_support(x, "left"), x.shape)
    np.testing.assert_array_equal(support[0, :, 0], [False, False, True, True])
    assert support[1].all()
    flagged = np.concatenate([x[..., :2], (x[..., :1] != 0).astype(np.float32)], -1)
    support = np.broadcast_to(noise_support(flagged, "mask"), x.shape)
    np.testing.assert_array_equal(support[0], [[False] * 3, [False] * 3, [True, True, False], [True, True, False]])
    assert np.broadcast_to(noise_support(x, "none"), x.shape).all()
    assert np.broadcast_to(noise_support(x, None), x.shape).all()
