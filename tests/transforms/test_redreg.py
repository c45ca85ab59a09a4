"""RedReg: orthogonal-complement update, gate and monitor conditions, schedule, contract."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.redreg import gate_threshold, redreg, suppression_strength

from .contract import check_contract, group_labels

AV = ("audio", "visual")
FIRE = {"confidence": {"audio": 0.7, "visual": 0.4}, "redundancy": {"audio": 1.0, "visual": 0.0},
        "similarity": 0.9}


def _tree(seed):
    rng = np.random.default_rng(seed)
    leaf = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return {"audio": {"conv": leaf(3, 3, 2, 4), "w": leaf(5, 3), "b": leaf(3)},
            "visual": {"w": leaf(4, 3)}, "head": {"w": leaf(6, 2)}}


def _two_steps(tx, grads, extra):
    """Step at epoch 0 with params p0 (snapshot), then a step with params p1."""
    p0, p1 = _tree(0), _tree(1)
    state = tx.init(p0)
    _, state = tx.update(grads, state, p0, **extra, epoch=0)
    out, state = tx.update(grads, state, p1, **extra, epoch=0)
    return out, state, p0, p1


def test_update_adds_orthogonal_drift_to_dominant_encoder():
    g = _tree(2)
    g["audio"]["b"] = jnp.zeros(3)  # g ≡ 0: the drift is added unprojected
    out, state, p0, p1 = _two_steps(redreg(AV, labels=group_labels, num_epochs=10), g, FIRE)
    beta = math.exp(0.9 * math.tanh(0.3))
    np.testing.assert_allclose(state.beta, [beta, 0.0], rtol=1e-6)
    for k in ("conv", "w"):
        g_k, delta = np.asarray(g["audio"][k]), np.asarray(out["audio"][k]) - np.asarray(g["audio"][k])
        np.testing.assert_allclose(np.vdot(delta, g_k), 0.0, atol=1e-4)  # <ĝ - g, g> = 0
        d = np.asarray(p1["audio"][k] - p0["audio"][k])
        d_perp = d - np.vdot(d, g_k) / (np.vdot(g_k, g_k) + 1e-12) * g_k
        np.testing.assert_allclose(delta, beta * d_perp, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["audio"]["b"], beta * (p1["audio"]["b"] - p0["audio"]["b"]), rtol=1e-5)
    np.testing.assert_array_equal(out["visual"]["w"], g["visual"]["w"])
    np.testing.assert_array_equal(out["head"]["w"], g["head"]["w"])


@pytest.mark.parametrize("change", [
    {"similarity": 0.1},                                           # gate closed: sim < tau
    {"redundancy": {"audio": 0.15, "visual": 5.0}},                # r_dominant not above R
    {"confidence": {"audio": 0.5, "visual": 0.5}},                 # no dominant modality
])
def test_update_equals_gradient_when_not_triggered(change):
    g = _tree(2)
    out, state, _, _ = _two_steps(redreg(AV, labels=group_labels, num_epochs=10), g, {**FIRE, **change})
    jax.tree.map(np.testing.assert_array_equal, out, g)
    np.testing.assert_array_equal(state.beta, 0.0)


def test_gate_comparison_paper_vs_code():
    g = _tree(2)
    at_threshold = {**FIRE, "similarity": 0.2}  # tau(0) = tau_min = 0.2
    _, state, _, _ = _two_steps(redreg(AV, labels=group_labels, num_epochs=10), g, at_threshold)
    assert state.beta[0] > 0  # paper: sim >= tau
    _, state, _, _ = _two_steps(redreg(AV, labels=group_labels, num_epochs=10, gate_inclusive=False),
                                g, at_threshold)
    assert state.beta[0] == 0  # code: sim > tau


def test_gate_threshold_schedule_and_strength():
    np.testing.assert_allclose([gate_threshold(e, 80) for e in (0, 40, 79)],
                               [0.2, 0.2 + 0.3 * 40 / 79, 0.5], rtol=1e-6)
    np.testing.assert_allclose(gate_threshold(0, 1), 0.2)
    np.testing.assert_allclose(
        suppression_strength(jnp.array([0.2, 0.9, 0.5]), jnp.array([0.0, 0.2, 9.0])),
        [0.0, math.exp(0.9 * math.tanh(0.4)), 0.0], rtol=1e-6)


def test_snapshot_refreshes_when_epoch_changes():
    tx = redreg(AV, labels=group_labels, num_epochs=10)
    g, p0, p1 = _tree(2), _tree(0), _tree(1)
    state = tx.init(p0)
    _, state = tx.update(g, state, p0, **FIRE, epoch=0)
    out, state = tx.update(g, state, p1, **FIRE, epoch=1)  # new epoch: snapshot <- p1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), out, g)
    jax.tree.map(np.testing.assert_array_equal, state.snapshot["audio"], p1["audio"])
    assert int(state.epoch) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_epochs=0), "`num_epochs` must be >= 1"),
    (dict(threshold=-1.0), "`threshold` must be non-negative"),
    (dict(kappa=-0.5), "`kappa` must be non-negative"),
    (dict(tau_min=0.6), "must not exceed `tau_max`"),
    (dict(modalities=["visual"]), "at least 2 modalities"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        redreg(**{"modalities": AV, "labels": group_labels, "num_epochs": 10, **kwargs})


def test_missing_extra_args_are_named():
    p = _tree(0)
    tx = redreg(AV, labels=group_labels, num_epochs=10)
    with pytest.raises(ValueError, match="`similarity="):
        tx.update(p, tx.init(p), p, confidence=FIRE["confidence"], redundancy=FIRE["redundancy"],
                  epoch=0)


def test_contract():
    check_contract(redreg, dict(modalities=AV, labels=group_labels, num_epochs=10),
                   lambda i: {**FIRE, "confidence": {"audio": 0.6 + 0.1 * i, "visual": 0.4},
                              "epoch": i}, inject="kappa")


def test_num_epochs_from_extra_arg():
    """``num_epochs=None``: E is read from the extra args at every update."""
    g, p0 = _tree(2), _tree(0)
    tx = redreg(AV, labels=group_labels, num_epochs=None)
    state = tx.init(p0)
    for total, fired in ((3, False), (5, True)):  # τ(1) = 0.35 for E = 3, 0.275 for E = 5
        _, s = tx.update(g, state, p0, **{**FIRE, "similarity": 0.3}, epoch=1, num_epochs=total)
        assert (float(s.beta[0]) > 0) == fired
    with pytest.raises(ValueError, match="`num_epochs="):
        tx.update(g, state, p0, **FIRE, epoch=0)
