import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _tiny import MODEL, OPT, tiny_splits, train_cfg
from jaxmm.data.types import Batch
from jaxmm.losses import classification_loss
from jaxmm.methods import EpochContext, StepContext, get_method
from jaxmm.metrics.ksg import ksg_mutual_information
from jaxmm.models.multimodal import ModelOutput
from jaxmm.train.loop import fit
from jaxmm.train.state import TrainState, build_model

DIMS = {"a": 4, "b": 4}


def _state(method, n=8):
    model = build_model(method, DIMS, 3, MODEL, nnx.Rngs(0))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    batch = Batch({m: jnp.ones((n, d)) for m, d in DIMS.items()}, jnp.zeros(n, jnp.int32), jnp.arange(n), {})
    stack = lambda tree: jax.tree.map(lambda x: jnp.asarray(x)[None], tree)
    return model, TrainState(stack(params), stack(rest), None, stack(method.init_state(model, batch)), None, None, None)


def _context(epoch, train_out, val_logits, labels):
    data = {"train": Batch({}, labels[None], None, {}), "val": Batch({}, labels[None], None, {})}
    outputs = lambda state, split: train_out if split == "train" else ModelOutput(val_logits[None], {}, {})
    return EpochContext(epoch, 3, data, outputs)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_refresh_is_minmax_kl_times_mi_smoothed_and_schedule_follows_val_loss():
    rng = np.random.default_rng(0)
    n = 150
    fused = rng.normal(size=(n, 3)).astype(np.float32)
    uni = {"a": 2.0 * fused,                                        # a function of the fused output: high MI
           "b": rng.normal(size=(n, 3)).astype(np.float32)}         # independent: MI ≈ 0
    labels = rng.integers(0, 3, n)
    method = get_method("btw", max_examples=n + 5)
    _, state = _state(method)
    train_out = ModelOutput(fused[None], {m: v[None] for m, v in uni.items()}, {})
    state = method.epoch_end(state, {}, _context(0, train_out, fused, labels))

    p_mm = _softmax(fused)
    for j, m in enumerate("ab"):
        p = _softmax(uni[m])
        kl = np.sum(p * np.log(p / p_mm), -1)
        mi = max(float(ksg_mutual_information(p, p_mm, k=3)), 1e-5)
        expected = 0.5 * (kl - kl.min()) / (kl.max() - kl.min()) * mi + 0.5 * 1.0
        np.testing.assert_allclose(state.method_state["weights"][0, :n, j], expected, rtol=2e-3, atol=1e-5)
        assert (mi > 1.0) if m == "a" else (mi < 0.1)
    np.testing.assert_array_equal(state.method_state["weights"][0, n:], 1.0)  # rows past the split untouched
    val_loss = float(np.mean(classification_loss(jnp.asarray(fused), jnp.asarray(labels))))
    np.testing.assert_allclose(state.method_state["smooth"], [0.45])  # first loss beats +inf: s − 0.05
    np.testing.assert_allclose(state.method_state["best_loss"], [val_loss], rtol=1e-6)
    eval_w = [l for p, l in jax.tree_util.tree_leaves_with_path(state.rest) if "btw" in str(p)][0]
    np.testing.assert_allclose(eval_w[0, :2], state.method_state["weights"][0, :n].mean(0), rtol=1e-5)
    np.testing.assert_array_equal(eval_w[0, 2:], 1.0)
    # A worse validation loss on the next refresh raises s back by 0.05; smoothing uses s = 0.45.
    before = np.asarray(state.method_state["weights"][0, :n])
    state = method.epoch_end(state, {}, _context(1, train_out, -5 * fused, labels))
    np.testing.assert_allclose(state.method_state["smooth"], [0.5])
    p = _softmax(uni["a"])
    kl = np.sum(p * np.log(p / p_mm), -1)
    mi = float(ksg_mutual_information(p, p_mm, k=3))
    np.testing.assert_allclose(state.method_state["weights"][0, :n, 0],
                               0.45 * (kl - kl.min()) / (kl.max() - kl.min()) * mi + 0.55 * before[:, 0], rtol=2e-3)


def test_refresh_every_and_kl_only_ablation():
    rng = np.random.default_rng(1)
    n = 50
    fused, u = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    out = ModelOutput(fused[None], {"a": u[None], "b": fused[None] + 0.5 * u[None]}, {})
    method = get_method("btw", combine="kl", refresh_every=2, smooth=1.0, max_examples=n)
    _, state = _state(method)
    state = method.epoch_end(state, {}, _context(0, out, fused, rng.integers(0, 3, n)))
    np.testing.assert_array_equal(state.method_state["weights"], 1.0)  # epoch 1 of every 2: no refresh
    state = method.epoch_end(state, {}, _context(1, out, fused, rng.integers(0, 3, n)))
    w = np.asarray(state.method_state["weights"][0])
    np.testing.assert_allclose(w.min(0), 0.0, atol=1e-6)  # s = 1: the min-max normalised KL itself
    np.testing.assert_allclose(w.max(0), 1.0, rtol=1e-5)
    rescaled = get_method("btw", combine="kl", smooth=1.0, rescale=True, max_examples=n)
    _, state = _state(rescaled)
    state = rescaled.epoch_end(state, {}, _context(0, out, fused, rng.integers(0, 3, n)))
    np.testing.assert_allclose(state.method_state["weights"][0], w / w.mean(), rtol=1e-5)


def test_terms_scale_embeddings_or_weight_the_unimodal_losses():
    rng = np.random.default_rng(2)
    for apply in ("embedding", "loss"):
        method = get_method("btw", apply=apply, max_examples=10)
        model, _ = _state(method)
        table = jnp.asarray(rng.uniform(size=(10, 2)), jnp.float32)
        index = jnp.asarray([3, 7, 1, 0])
        batch = Batch({m: jnp.asarray(rng.normal(size=(4, 4)), jnp.float32) for m in DIMS},
                      jnp.asarray([0, 1, 2, 0]), index, {})
        ctx = StepContext(jax.random.key(0), {"lam_uni": jnp.asarray(1.0)}, jnp.asarray(0),
                          {"weights": table})
        terms, aux = method.terms(model, batch, ctx)
        z, w = model.encode(batch.inputs), table[index]
        uni = [classification_loss(model.unimodal(m, z[m]), batch.label) for m in DIMS]
        if apply == "embedding":
            fused = model.fuse({m: z[m] * w[:, j, None] for j, m in enumerate(DIMS)})
            np.testing.assert_allclose(terms["uni_ce"], uni[0] + uni[1], rtol=1e-5)
        else:
            fused = model.fuse(z)
            np.testing.assert_allclose(terms["uni_ce"], w[:, 0] * uni[0] + w[:, 1] * uni[1], rtol=1e-5)
        np.testing.assert_allclose(terms["ce"], classification_loss(fused, batch.label), rtol=1e-5)
        np.testing.assert_allclose(aux["btw_w/b"], w[:, 1].mean(), rtol=1e-6)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="unknown apply"):
        get_method("btw", apply="logits")
    with pytest.raises(ValueError, match="unknown mi_estimator"):
        get_method("btw", mi_estimator="kde")
    with pytest.raises(ValueError, match="refresh_every"):
        get_method("btw", refresh_every=0)
    with pytest.raises(ValueError, match=r"smooth=1.5"):
        get_method("btw", smooth=1.5)
    small = get_method("btw", max_examples=20)
    _, state = _state(small)
    labels = np.zeros(40, np.int64)
    with pytest.raises(ValueError, match="max_examples >= 40"):
        small.epoch_end(state, {}, _context(0, None, np.zeros((40, 3), np.float32), labels))


def test_fit_refreshes_weights_and_trains_with_one_compilation():
    result = fit(get_method("btw", max_examples=64), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    assert result.trainer.traces == 1
    weights = np.asarray(result.state.method_state["weights"])
    assert weights.shape == (2, 64, 2)
    assert not np.allclose(weights[:, :40], 1.0) and np.all(weights[:, :40] >= 0)
    np.testing.assert_array_equal(weights[:, 40:], 1.0)
    losses = np.array([h["train/loss"] for h in result.history])
    assert np.isfinite(losses).all() and (losses[-1] < losses[0]).all()
    assert np.all(np.asarray(result.state.method_state["smooth"]) != 0.5)  # the schedule moved
