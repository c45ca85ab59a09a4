"""D&R method: schedule, purity-gap strength and soft re-initialisation in the epoch hook, options, fit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.methods import get_method
from jaxmm.methods.dnr import is_reinit_epoch
from jaxmm.models.multimodal import ModelOutput
from jaxmm.train.loop import fit

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import make_model, run_hook_vmapped
from ._onestep import AV, AV_SHAPES, LINEAR_HEAD, trace_step

DIMS = {"a": 4, "b": 4}
LABELS = np.array([0, 0, 0, 1, 2, 1])  # the most frequent class holds half the examples


def _separable():
    """Three tight, far-apart clusters, one per class: k-means purity 1."""
    return np.eye(3, 5)[LABELS] * 100.0 + np.random.default_rng(0).normal(size=(6, 5)) * 0.01


def _splits(method, epoch):
    """(labels, outputs) of the splits the hook reads, stacked over two runs.

    Run 0: modality a is pure on train, collapsed on val; run 1: the same for modality b.
    """
    sep, flat = _separable(), np.zeros((6, 5))
    features = {"train": {"a": [sep, sep], "b": [sep, sep]}, "val": {"a": [flat, sep], "b": [sep, flat]}}
    splits = method.epoch_end.reads(epoch, 10)
    labels = {s: np.stack([LABELS, LABELS]) for s in splits}
    outputs = {s: ModelOutput(np.zeros((2, 6, 3)), {}, {m: np.stack(f) for m, f in features[s].items()})
               for s in splits}
    return labels, outputs


def _two_runs(method):
    """Parameters and method states of two runs, stacked (all the hook reads)."""
    models = [make_model(method, DIMS, 3, MODEL, seed) for seed in (0, 1)]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    return stack([nnx.state(m, nnx.Param) for m in models]), stack([method.init_state(m, None) for m in models])


def test_schedule():
    assert [e for e in range(100) if is_reinit_epoch(e, 20, 3)] == [20, 40, 60]
    assert [e for e in range(40) if is_reinit_epoch(e, 15, 2)] == [15, 30]


def test_hook_reinitialises_each_encoder_by_its_purity_gap():
    method = get_method("dnr", reinit_epoch=2)
    params, method_state = _two_runs(method)
    theta_init = jax.tree.map(np.array, params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), method_state["init"], theta_init)
    params = jax.tree.map(lambda p: p + 1.0, params)  # trained: θ = θ_init + 1
    # not a re-initialisation epoch: no split is read and the run comes back unchanged
    assert method.epoch_end.reads(1, 10) == ()
    same = run_hook_vmapped(method, params, method_state, 1, 10, *_splits(method, 1))
    jax.tree.map(np.testing.assert_array_equal, (same.params, same.state), (params, method_state))
    assert dict(same.logs) == {}

    assert method.epoch_end.reads(2, 10) == ("train", "val")
    new = run_hook_vmapped(method, params, method_state, 2, 10, *_splits(method, 2))
    stats = new.logs
    alpha = math.tanh(3.0 * 0.5)  # |P_train − P_val| = |1 − 1/2|
    np.testing.assert_allclose(stats["dnr/purity_train/a"], [1.0, 1.0])
    np.testing.assert_allclose(stats["dnr/purity_val/a"], [0.5, 1.0])
    np.testing.assert_allclose(stats["dnr/strength/a"], [alpha, 0.0], rtol=1e-6)
    np.testing.assert_allclose(stats["dnr/strength/b"], [0.0, alpha], rtol=1e-6)
    np.testing.assert_allclose(new.state["strength"]["a"], [alpha, 0.0], rtol=1e-6)
    for m, a in {"a": np.array([alpha, 0.0]), "b": np.array([0.0, alpha])}.items():
        for p_new, p0 in zip(jax.tree.leaves(new.params["encoders"][m]), jax.tree.leaves(theta_init["encoders"][m])):
            a_r = a.reshape((2,) + (1,) * (p0.ndim - 1))  # per run
            np.testing.assert_allclose(p_new, a_r * p0 + (1 - a_r) * (p0 + 1.0), rtol=1e-6, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, new.params["fusion_head"], params["fusion_head"])
    jax.tree.map(np.testing.assert_array_equal, new.state["init"], method_state["init"])  # θ_init kept
    assert not any(method.epoch_end.reset_optimizer(e) for e in range(10))  # the optimiser state is untouched


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
        metrics, (pred, uni), _ = trace_step(get_method("dnr"), shapes, cfg)
        assert pred.shape == (4, 6) and uni == {} and "term/ce" in metrics  # no unimodal heads (official)
