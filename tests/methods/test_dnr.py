"""D&R method: schedule, purity-gap strength and soft re-initialisation in the epoch hook, options, fit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmm.data.types import Batch
from jaxmm.methods import EpochContext, get_method
from jaxmm.methods.dnr import is_reinit_epoch
from jaxmm.models.multimodal import ModelOutput
from jaxmm.train.loop import fit
from jaxmm.train.state import TrainState, build_model

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._onestep import AV, AV_SHAPES, LINEAR_HEAD, trace_step

DIMS = {"a": 4, "b": 4}
LABELS = np.array([0, 0, 0, 1, 2, 1])  # the most frequent class holds half the examples


def _separable():
    """Three tight, far-apart clusters, one per class: k-means purity 1."""
    return np.eye(3, 5)[LABELS] * 100.0 + np.random.default_rng(0).normal(size=(6, 5)) * 0.01


def _context(epoch):
    """Run 0: modality a is pure on train, collapsed on val; run 1: the same for modality b."""
    sep, flat = _separable(), np.zeros((6, 5))
    features = {"train": {"a": [sep, sep], "b": [sep, sep]}, "val": {"a": [flat, sep], "b": [sep, flat]}}
    labels = np.stack([LABELS, LABELS])
    data = {s: Batch({}, labels, np.broadcast_to(np.arange(6), (2, 6)), {}) for s in ("train", "val")}
    outputs = lambda state, split: ModelOutput(np.zeros((2, 6, 3)), {},
                                               {m: np.stack(f) for m, f in features[split].items()})
    return EpochContext(epoch, 10, data, outputs)


def _two_runs(method):
    """A two-run train state as the hook sees it (only parameters and method state are read)."""
    models = [build_model(method, DIMS, 3, MODEL, nnx.Rngs(seed)) for seed in (0, 1)]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    return TrainState(stack([nnx.state(m, nnx.Param) for m in models]), None, ("optimiser state",),
                      stack([method.init_state(m, None) for m in models]), None, jnp.zeros(2, jnp.int32),
                      jnp.full(2, 3, jnp.int32))


def test_schedule():
    assert [e for e in range(100) if is_reinit_epoch(e, 20, 3)] == [20, 40, 60]
    assert [e for e in range(40) if is_reinit_epoch(e, 15, 2)] == [15, 30]


def test_hook_reinitialises_each_encoder_by_its_purity_gap():
    method = get_method("dnr", reinit_epoch=2)
    state = _two_runs(method)
    theta_init = jax.tree.map(np.array, state.params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b),
                 state.method_state["init"]["encoders"], theta_init["encoders"])
    assert all(isinstance(x, optax.MaskedNode) for x in jax.tree.leaves(
        state.method_state["init"]["fusion_head"], is_leaf=lambda x: isinstance(x, optax.MaskedNode)))
    state = state._replace(params=jax.tree.map(lambda p: p + 1.0, state.params))  # trained: θ = θ_init + 1
    assert method.epoch_end(state, {}, _context(epoch=1)) is state  # not a re-initialisation epoch

    stats = {}
    new = method.epoch_end(state, stats, _context(epoch=2))
    alpha = math.tanh(3.0 * 0.5)  # |P_train − P_val| = |1 − 1/2|
    np.testing.assert_allclose(stats["dnr/purity_train/a"], [1.0, 1.0])
    np.testing.assert_allclose(stats["dnr/purity_val/a"], [0.5, 1.0])
    np.testing.assert_allclose(stats["dnr/strength/a"], [alpha, 0.0], rtol=1e-6)
    np.testing.assert_allclose(stats["dnr/strength/b"], [0.0, alpha], rtol=1e-6)
    np.testing.assert_allclose(new.method_state["strength"]["a"], [alpha, 0.0], rtol=1e-6)
    for m, a in {"a": np.array([alpha, 0.0]), "b": np.array([0.0, alpha])}.items():
        for p_new, p0 in zip(jax.tree.leaves(new.params["encoders"][m]), jax.tree.leaves(theta_init["encoders"][m])):
            a_r = a.reshape((2,) + (1,) * (p0.ndim - 1))  # per run
            np.testing.assert_allclose(p_new, a_r * p0 + (1 - a_r) * (p0 + 1.0), rtol=1e-6, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, new.params["fusion_head"], state.params["fusion_head"])
    assert new.opt_state is state.opt_state


@pytest.mark.parametrize("options", [{"lam": -1.0}, {"reinit_epoch": 0}, {"reinit_num": -1},
                                     {"kmeans_iters": 0}, {"kmeans_restarts": 0}])
def test_bad_options(options):
    with pytest.raises(ValueError, match="dnr: need lam >= 0"):
        get_method("dnr", **options)


def test_fit_reinitialises_once_and_trains():
    r = fit(get_method("dnr", reinit_epoch=1, reinit_num=1), [tiny_splits()], [0, 1], MODEL, OPT,
            train_cfg(epochs=3))
    assert r.trainer.traces == 1
    assert [any(k.startswith("dnr/") for k in h) for h in r.history] == [False, True, False]
    np.testing.assert_allclose(r.state.method_state["strength"]["a"], r.history[1]["dnr/strength/a"])
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert max(t["acc"] for t in r.test) > 0.4  # 3 classes


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    for shapes, cfg in ((AV_SHAPES, AV), ({"a": (3,), "b": (4,), "c": (2,)}, LINEAR_HEAD)):
        metrics, (pred, uni) = trace_step(get_method("dnr"), shapes, cfg)
        assert pred.shape == (4, 6) and uni == {} and "term/ce" in metrics  # no unimodal heads (official)
