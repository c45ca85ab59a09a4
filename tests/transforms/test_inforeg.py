"""InfoReg: dominance, strength, proximal pull to the epoch-start snapshot, Fisher bookkeeping."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.inforeg import inforeg

from .contract import check_contract, group_labels

AV = ("audio", "visual")
SCALES = {"audio": 0.95, "visual": 0.1}


def _tree(seed):
    rng = np.random.default_rng(seed)
    leaf = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return {"audio": {"w": leaf(3, 2), "b": leaf(2)}, "visual": {"w": leaf(2, 2)},
            "head": {"w": leaf(4, 3)}}


def test_dominant_encoder_pulled_to_epoch_start_snapshot():
    tx = inforeg(AV, labels=group_labels, scales=SCALES)
    update = jax.jit(tx.update)
    p0, p1, p2, g = _tree(0), _tree(1), _tree(2), _tree(3)
    scores = {"audio": 30.0, "visual": 20.0}
    state = tx.init(p0)
    out, state = update(g, state, p0, scores=scores, epoch=0)  # snapshot <- p0, drift 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out, g)
    out, state = update(g, state, p1, scores=scores, epoch=0)
    beta = 0.95 * math.exp(math.tanh(10.0))
    np.testing.assert_allclose(state.beta, [beta, 0.0], rtol=1e-6)
    for k in ("w", "b"):
        np.testing.assert_allclose(out["audio"][k], g["audio"][k] + beta * (p1["audio"][k] - p0["audio"][k]),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["visual"]["w"], g["visual"]["w"])
    np.testing.assert_array_equal(out["head"]["w"], g["head"]["w"])
    # A new epoch refreshes the snapshot: no drift at its first step.
    out, state = update(g, state, p2, scores={"audio": 1.0, "visual": 3.0}, epoch=1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out, g)
    np.testing.assert_allclose(state.beta, [0.0, 0.1 * math.exp(math.tanh(2.0))], rtol=1e-6)


def test_fisher_trace_accumulates_modified_weight_gradients():
    tx = inforeg(AV, labels=group_labels, scales=SCALES)
    p0, p1, g = _tree(0), _tree(1), _tree(3)
    state = tx.init(p0)
    _, state = tx.update(g, state, p0, scores={"audio": 3.0, "visual": 2.0}, epoch=0)
    out, state = tx.update(g, state, p1, scores={"audio": 3.0, "visual": 2.0}, epoch=0)
    # Audio: "w" (ndim 2) counts, the bias does not.
    expected = [np.mean(np.square(g["audio"]["w"])) + np.mean(np.square(out["audio"]["w"])),
                2 * np.mean(np.square(g["visual"]["w"]))]
    np.testing.assert_allclose(state.monitor.current, expected, rtol=1e-5)
    assert int(state.monitor.steps) == 2


def test_tie_or_closed_window_means_no_regulation():
    p0, p1, g = _tree(0), _tree(1), _tree(3)
    tx = inforeg(AV, labels=group_labels)
    state = tx.init(p0)
    _, state = tx.update(g, state, p0, scores={"audio": 2.0, "visual": 2.0}, epoch=0)
    out, state = tx.update(g, state, p1, scores={"audio": 2.0, "visual": 2.0}, epoch=0)
    jax.tree.map(np.testing.assert_array_equal, out, g)
    # k_0 = 1 is not above a threshold of 1: the window is closed.
    tx = inforeg(AV, labels=group_labels, threshold=1.0, monitored="visual")
    state = tx.init(p0)
    _, state = tx.update(g, state, p0, scores={"audio": 5.0, "visual": 2.0}, epoch=0)
    out, _ = tx.update(g, state, p1, scores={"audio": 5.0, "visual": 2.0}, epoch=0)
    jax.tree.map(np.testing.assert_array_equal, out, g)


@pytest.mark.parametrize("kwargs, match", [
    (dict(modalities=("audio",)), "at least 2 modalities"),
    (dict(scales={"audio": 1.0}), "no entry for modalities \\['visual'\\]"),
    (dict(scales=-1.0), "must be non-negative"),
    (dict(threshold=-0.1), "`threshold` must be non-negative"),
    (dict(window=0), "`window` must be >= 1"),
    (dict(monitored="text"), "`monitored` must be None or one of"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        inforeg(**{"modalities": AV, "labels": group_labels, **kwargs})


def test_needs_params_and_extra_args():
    p0 = _tree(0)
    tx = inforeg(AV, labels=group_labels)
    with pytest.raises(ValueError, match="params"):
        tx.update(p0, tx.init(p0), scores={"audio": 1.0, "visual": 2.0}, epoch=0)
    with pytest.raises(ValueError, match="`epoch="):
        tx.update(p0, tx.init(p0), p0, scores={"audio": 1.0, "visual": 2.0})


def test_contract():
    check_contract(inforeg, dict(modalities=AV, labels=group_labels, scales=SCALES),
                   lambda i: {"scores": {"audio": 3.0 + i, "visual": 2.0}, "epoch": i},
                   inject="threshold")
