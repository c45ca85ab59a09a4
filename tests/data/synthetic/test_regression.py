import jax
import numpy as np
import pytest

from jaxmm.data.registry import DATASETS, load_dataset
from jaxmm.data.synthetic import regression as R

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost

CFG = R.RegressionConfig()
N_BIG = 200_000


@pytest.fixture(scope="module")
def big():
    """A large sample of the default task (for Monte-Carlo checks of the closed forms)."""
    return jax.device_get(R.generate(jax.random.key(11), N_BIG, CFG))


def test_splits_are_float_regression_targets_with_one_output():
    s = R.splits(0, sizes={"train": 300, "val": 50, "test": 80})
    assert s.task == "regression" and s.num_classes == 1 and s.modalities == ("x0", "x1")
    assert (len(s.train), len(s.val), len(s.test)) == (300, 50, 80)
    for ds in (s.train, s.val, s.test):
        assert ds.task == "regression"
        assert ds.label.dtype == np.float32 and ds.label.shape == (len(ds),)
        assert ds.inputs["x0"].shape == (len(ds), CFG.dim) and ds.inputs["x1"].dtype == np.float32
        parts = sum(ds.meta[k] for k in ("redundant", "unique/x0", "unique/x1", "synergy", "noise"))
        np.testing.assert_allclose(parts, ds.label, atol=1e-5)


def test_deterministic_per_seed_and_different_across_seeds_and_splits():
    sizes = {"train": 200, "val": 200, "test": 10}
    a, b, c = R.splits(3, sizes=sizes), R.splits(3, sizes=sizes), R.splits(4, sizes=sizes)
    np.testing.assert_array_equal(a.train.inputs["x0"], b.train.inputs["x0"])
    np.testing.assert_array_equal(a.test.label, b.test.label)
    assert not np.allclose(a.train.label, c.train.label)
    assert not np.allclose(a.train.label, a.val.label)


def test_latent_layout_and_target_moments(big):
    y = big["y"]
    assert abs(y.mean()) < 0.02 and abs(y.var() - CFG.target_variance()) < 0.03
    assert CFG.target_variance() == pytest.approx(2.25)
    assert np.mean(np.abs(y) <= 3.0) > 0.93  # "about [-3, 3]"
    np.testing.assert_array_equal(big["x0"][:, R.REDUNDANT], big["x1"][:, R.REDUNDANT])  # redundancy
    np.testing.assert_allclose(big["redundant"], CFG.redundant * big["x0"][:, R.REDUNDANT], rtol=1e-6)
    np.testing.assert_allclose(big["unique/x1"], CFG.unique[1] * big["x1"][:, R.UNIQUE], rtol=1e-6)
    np.testing.assert_allclose(big["synergy"], CFG.synergy * big["x0"][:, R.SYNERGY] * big["x1"][:, R.SYNERGY],
                               rtol=1e-5, atol=1e-6)
    nuisance = big["x0"][:, 3:]
    assert abs(nuisance.mean()) < 0.01 and abs(nuisance.std() - 1.0) < 0.01
    # neither factor alone says anything about the synergy part (uncorrelated, even in the second moment)
    for m in ("x0", "x1"):
        assert abs(np.corrcoef(big[m][:, R.SYNERGY], big["synergy"])[0, 1]) < 0.01
        assert abs(np.corrcoef(big[m][:, R.SYNERGY] ** 2, big["synergy"])[0, 1]) < 0.01


def test_closed_form_bayes_mse_values():
    assert R.bayes_mse(CFG) == pytest.approx(0.25)
    assert R.bayes_mse(CFG, ("x0",)) == pytest.approx(0.36 + 0.64 + 0.25)
    assert R.bayes_mse(CFG, ("x1",)) == pytest.approx(1.25)
    assert R.bayes_mse(CFG, ()) == pytest.approx(CFG.target_variance())
    cfg = R.RegressionConfig(unique=(0.2, 1.0), synergy=0.0, noise_std=0.1)
    assert R.bayes_mse(cfg, ("x0",)) == pytest.approx(1.0 + 0.01)
    assert R.bayes_mse(cfg, ("x1",)) == pytest.approx(0.04 + 0.01)


@pytest.mark.parametrize("modalities", [("x0", "x1"), ("x0",), ("x1",)])
def test_oracle_predictor_attains_the_bayes_mse(big, modalities):
    pred = R.bayes_prediction(CFG, {m: big[m] for m in modalities})
    err2 = (pred - big["y"].astype(np.float64)) ** 2
    se = err2.std() / np.sqrt(N_BIG)
    assert abs(err2.mean() - R.bayes_mse(CFG, modalities)) < 4 * se


def test_oracle_beats_other_predictors(big):
    """The conditional mean is optimal: shrinking or inflating it, or adding a modality's synergy factor, hurts."""
    x = {m: big[m] for m in ("x0",)}
    best = np.mean((R.bayes_prediction(CFG, x) - big["y"]) ** 2)
    for scale in (0.9, 1.1):
        assert np.mean((scale * R.bayes_prediction(CFG, x) - big["y"]) ** 2) > best
    assert np.mean((R.bayes_prediction(CFG, x) + 0.3 * big["x0"][:, R.SYNERGY] - big["y"]) ** 2) > best


def test_bad_config_and_modalities_raise():
    with pytest.raises(ValueError, match="dim=2 is too small"):
        R.RegressionConfig(dim=2)
    with pytest.raises(ValueError, match="unique must be two weights"):
        R.RegressionConfig(unique=(1.0,))
    with pytest.raises(ValueError, match="noise_std must be non-negative"):
        R.RegressionConfig(noise_std=-1.0)
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\]"):
        R.bayes_mse(CFG, ("audio",))
    with pytest.raises(ValueError, match="at least one modality"):
        R.bayes_prediction(CFG, {})


def test_registered_with_its_options():
    entry = DATASETS["synthetic_regression"]
    assert entry.data_dir == "unused" and "noise_std" in entry.summary
    s = load_dataset("synthetic_regression", 1, dim=5, unique=[0.1, 0.2], noise_std=0.0,
                     sizes={"train": 20, "val": 10, "test": 10})
    assert s.task == "regression" and s.train.inputs["x0"].shape == (20, 5)
    np.testing.assert_allclose(s.train.meta["unique/x1"], 0.2 * s.train.inputs["x1"][:, R.UNIQUE], rtol=1e-6)
    assert not s.train.meta["noise"].any()
    with pytest.raises(ValueError, match="bad options .*synthetic_regression"):
        load_dataset("synthetic_regression", 0, snr=3.0)
