import jax
import numpy as np
import pytest
from scipy.stats import norm

from jaxmm.data.registry import load_dataset
from jaxmm.data.synthetic import imbalance as I

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost

CFG = I.ImbalanceConfig()
BOTH = ("strong", "weak")


@pytest.fixture(scope="module")
def big():
    """A large sample of the default task (for Monte-Carlo checks of the closed forms)."""
    return jax.device_get(I.generate(jax.random.key(7), 80_000, CFG))


def test_split_shapes_meta_and_exact_label_balance():
    s = I.splits(0, sizes={"train": 400, "val": 100, "test": 200})
    assert (len(s.train), len(s.val), len(s.test)) == (400, 100, 200)
    assert s.train.inputs["strong"].shape == (400, 8) and s.train.inputs["weak"].shape == (400, 64)
    assert s.train.inputs["weak"].dtype == np.float32 and s.num_classes == 4
    assert s.train.class_names == ("c0f0", "c0f1", "c1f0", "c1f1")
    np.testing.assert_array_equal(np.bincount(s.train.label, minlength=4), [100] * 4)
    np.testing.assert_array_equal(s.train.label, s.train.meta["coarse"] * 2 + s.train.meta["fine"])
    assert not s.train.meta["blank/strong"].any()


def test_deterministic_per_seed_and_different_across_seeds_and_splits():
    sizes = {"train": 300, "val": 300, "test": 20}
    a, b, c = I.splits(3, sizes=sizes), I.splits(3, sizes=sizes), I.splits(4, sizes=sizes)
    np.testing.assert_array_equal(a.train.inputs["weak"], b.train.inputs["weak"])
    np.testing.assert_array_equal(a.test.label, b.test.label)
    assert not np.allclose(a.train.inputs["weak"], c.train.inputs["weak"])
    assert not np.allclose(a.train.inputs["strong"], a.val.inputs["strong"])


def test_class_means_follow_the_snr_blocks_and_noise_is_unit(big):
    means = CFG.means()
    for m in BOTH:
        for k in range(4):
            emp = big[m][big["y"] == k].mean(0)
            np.testing.assert_allclose(emp, means[m][k], atol=0.03)
        resid = big[m] - means[m][big["y"]]
        np.testing.assert_allclose(resid.std(0), 1.0, atol=0.02)
    # strong: coarse at SNR 3 on coordinate c, nothing about the fine class
    np.testing.assert_allclose(means["strong"][:, :4], [[3, 0, 0, 0], [3, 0, 0, 0], [0, 3, 0, 0], [0, 3, 0, 0]])
    np.testing.assert_allclose(means["weak"][:, :4], [[1.5, 0, 2, 0], [1.5, 0, 0, 2], [0, 1.5, 2, 0], [0, 1.5, 0, 2]])


@pytest.mark.parametrize("mu", [0.0, 0.7, 2.0, 4.0])
def test_argmax_accuracy_closed_forms(mu):
    assert I.argmax_accuracy(mu, 1) == pytest.approx(1.0)
    assert I.argmax_accuracy(mu, 2) == pytest.approx(norm.cdf(mu / np.sqrt(2)), abs=1e-9)
    if mu == 0.0:
        assert I.argmax_accuracy(mu, 5) == pytest.approx(0.2, abs=1e-9)


def test_argmax_accuracy_matches_simulation_for_four_classes():
    z = np.random.default_rng(0).normal(size=(400_000, 4))
    z[:, 0] += 1.3
    assert I.argmax_accuracy(1.3, 4) == pytest.approx(np.mean(z.argmax(1) == 0), abs=3e-3)


def test_default_bayes_values_and_ordering():
    acc = {ms: I.bayes_accuracy(CFG, ms) for ms in (("strong",), ("weak",), BOTH)}
    # strong: Φ(3/√2) · 1/2; weak: Φ(1.5/√2) Φ(2/√2); both: Φ(√(9+2.25)/√2) Φ(2/√2)
    assert acc[("strong",)] == pytest.approx(norm.cdf(3 / np.sqrt(2)) / 2, abs=1e-9)
    assert acc[("weak",)] == pytest.approx(norm.cdf(1.5 / np.sqrt(2)) * norm.cdf(np.sqrt(2)), abs=1e-9)
    assert acc[BOTH] == pytest.approx(norm.cdf(np.sqrt(11.25 / 2)) * norm.cdf(np.sqrt(2)), abs=1e-9)
    assert acc[("strong",)] < 0.5 < acc[("weak",)] < acc[BOTH] - 0.1


def test_closed_form_bayes_equals_the_map_rule_on_a_large_sample(big):
    # the weak modality alone is not enough; both together reach the higher Bayes accuracy
    se = 0.5 / np.sqrt(len(big["y"]))
    for ms in (("strong",), ("weak",), BOTH):
        emp = I.map_accuracy(CFG, {m: big[m] for m in ms}, big["y"])
        assert emp == pytest.approx(I.bayes_accuracy(CFG, ms), abs=4 * se), ms
    assert I.map_accuracy(CFG, {"weak": big["weak"]}, big["y"]) < I.map_accuracy(CFG, {m: big[m] for m in BOTH}, big["y"]) - 0.1


def test_blanked_strong_modality():
    cfg = I.ImbalanceConfig(num_coarse=1, num_fine=4, strong_snr=(0.0, 4.0), weak_snr=(0.0, 2.0), strong_blank=0.3)
    d = jax.device_get(I.generate(jax.random.key(1), 60_000, cfg))
    assert d["blank/strong"].mean() == pytest.approx(0.3, abs=0.01) and not d["blank/weak"].any()
    blanked = d["blank/strong"] == 1
    np.testing.assert_allclose(d["strong"][blanked].mean(0), 0.0, atol=0.03)
    strong = I.bayes_accuracy(cfg, ("strong",))
    assert strong == pytest.approx(0.7 * I.argmax_accuracy(4.0, 4) + 0.3 / 4, abs=1e-9)
    assert I.map_accuracy(cfg, {"strong": d["strong"]}, d["y"]) == pytest.approx(strong, abs=0.008)
    both = I.bayes_accuracy(cfg, BOTH, samples=60_000)
    # above either modality alone, below the oracle that knows which examples are blanked
    oracle = 0.7 * I.argmax_accuracy(np.sqrt(20.0), 4) + 0.3 * I.argmax_accuracy(2.0, 4)
    assert max(strong, I.bayes_accuracy(cfg, ("weak",))) + 0.05 < both <= oracle + 0.005


@pytest.mark.parametrize("kwargs, match", [
    ({"strong_dim": 3}, "strong_dim=3 is too small"),
    ({"weak_snr": (1.0, -1.0)}, "weak_snr must be two non-negative"),
    ({"strong_blank": 1.5}, "strong_blank is a probability"),
    ({"num_fine": 0}, "must be >= 1"),
])
def test_bad_configs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.ImbalanceConfig(**kwargs)


def test_bayes_rejects_unknown_modalities():
    with pytest.raises(ValueError, match="unknown modalities"):
        I.bayes_accuracy(CFG, ("audio",))


def test_registered_with_options():
    s = load_dataset("imbalance", 2, weak_dim=16, weak_snr=(0.5, 1.0), sizes={"train": 40, "val": 8, "test": 8})
    assert s.train.inputs["weak"].shape == (40, 16) and s.modalities == ("strong", "weak")
    with pytest.raises(ValueError, match="bad options"):
        load_dataset("imbalance", 0, weak_width=3)
