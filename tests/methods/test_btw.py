import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _tiny import MODEL, OPT, tiny_splits, train_cfg
from scipy.special import digamma

from jaxmm.data.types import Batch
from jaxmm.losses import classification_loss
from jaxmm.methods import EpochContext, RunState, StepContext, get_method
from jaxmm.methods.btw import scaled_forward
from jaxmm.metrics.ksg import ksg_mutual_information
from jaxmm.models.multimodal import ModelOutput
from jaxmm.tasks import Task
from jaxmm.train.loop import fit

from ._helpers import make_model, run_hook

DIMS = {"a": 4, "b": 4}


def _state(method, n=8):
    """(model, (parameters, method state)) of one run."""
    model = make_model(method, DIMS, 3, MODEL, 0)
    params = nnx.state(model, nnx.Param)
    batch = Batch({m: jnp.ones((n, d)) for m, d in DIMS.items()}, jnp.zeros(n, jnp.int32), jnp.arange(n), {})
    return model, (params, method.init_state(model, batch))


def _refresh(method, run, epoch, train_out, val_logits, labels):
    """The epoch hook on one run, given the splits it reads (``train`` only on a refresh epoch)."""
    splits = method.epoch_end.reads(epoch, 3)
    outputs = {"train": train_out, "val": ModelOutput(val_logits, {}, {})}
    params, state = run
    new = run_hook(method, params, state, epoch, 3, labels={s: labels for s in splits},
                   outputs={s: outputs[s] for s in splits})
    return new.params, new.state


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
    model, run = _state(method)
    assert method.epoch_end.reads(0, 3) == ("val", "train")
    train_out = ModelOutput(fused, dict(uni), {})
    run = _refresh(method, run, 0, train_out, fused, labels)
    state = run[1]

    p_mm = _softmax(fused)
    for j, m in enumerate("ab"):
        p = _softmax(uni[m])
        kl = np.sum(p * np.log(p / p_mm), -1)
        mi = max(float(ksg_mutual_information(p, p_mm, k=3)), 1e-5)
        expected = 0.5 * (kl - kl.min()) / (kl.max() - kl.min()) * mi + 0.5 * 1.0
        np.testing.assert_allclose(state["weights"][:n, j], expected, rtol=2e-3, atol=1e-5)
        assert (mi > 1.0) if m == "a" else (mi < 0.1)
    np.testing.assert_array_equal(state["weights"][n:], 1.0)  # rows past the split untouched
    val_loss = float(np.mean(classification_loss(jnp.asarray(fused), jnp.asarray(labels))))
    np.testing.assert_allclose(state["smooth"], 0.45)  # first loss beats +inf: s − 0.05
    np.testing.assert_allclose(state["best_loss"], val_loss, rtol=1e-6)
    # The evaluation pass scales every example's features by the modality's mean train weight.
    np.testing.assert_allclose(state["mean_weights"], np.asarray(state["weights"][:n]).mean(0), rtol=1e-5)
    x = {m: jnp.asarray(np.random.default_rng(3).normal(size=(5, d)), jnp.float32) for m, d in DIMS.items()}
    mean_w = np.asarray(state["mean_weights"])
    evaluated = method.forward(model, x, StepContext(state=state, modalities=tuple(DIMS)))
    by_hand = scaled_forward(model, x, jnp.broadcast_to(mean_w, (5, 2)), normalize=True)
    np.testing.assert_allclose(evaluated.logits, by_hand.logits, rtol=1e-5, atol=1e-6)
    assert not np.allclose(evaluated.logits, scaled_forward(model, x, None, normalize=True).logits, atol=1e-3)
    # A worse validation loss on the next refresh raises s back by 0.05; smoothing uses s = 0.45.
    before = np.asarray(state["weights"][:n])
    state = _refresh(method, run, 1, train_out, -5 * fused, labels)[1]
    np.testing.assert_allclose(state["smooth"], 0.5)
    p = _softmax(uni["a"])
    kl = np.sum(p * np.log(p / p_mm), -1)
    mi = float(ksg_mutual_information(p, p_mm, k=3))
    np.testing.assert_allclose(state["weights"][:n, 0],
                               0.45 * (kl - kl.min()) / (kl.max() - kl.min()) * mi + 0.55 * before[:, 0], rtol=2e-3)


def test_refresh_every_and_kl_only_ablation():
    rng = np.random.default_rng(1)
    n = 50
    fused, u = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    out = ModelOutput(fused, {"a": u, "b": fused + 0.5 * u}, {})
    method = get_method("btw", combine="kl", refresh_every=2, smooth=1.0, max_examples=n)
    _, run = _state(method)
    assert method.epoch_end.reads(0, 3) == ("val",)  # no train pass when nothing is refreshed
    run = _refresh(method, run, 0, out, fused, rng.integers(0, 3, n))
    np.testing.assert_array_equal(run[1]["weights"], 1.0)  # epoch 1 of every 2: no refresh
    run = _refresh(method, run, 1, out, fused, rng.integers(0, 3, n))
    w = np.asarray(run[1]["weights"])
    np.testing.assert_allclose(w.min(0), 0.0, atol=1e-6)  # s = 1: the min-max normalised KL itself
    np.testing.assert_allclose(w.max(0), 1.0, rtol=1e-5)
    rescaled = get_method("btw", combine="kl", smooth=1.0, rescale=True, max_examples=n)
    _, run = _state(rescaled)
    run = _refresh(rescaled, run, 0, out, fused, rng.integers(0, 3, n))
    np.testing.assert_allclose(run[1]["weights"], w / w.mean(), rtol=1e-5)


def test_terms_scale_embeddings_or_weight_the_unimodal_losses():
    rng = np.random.default_rng(2)
    for apply, normalize in (("embedding", False), ("embedding", True), ("loss", True)):
        method = get_method("btw", apply=apply, normalize=normalize, max_examples=10)
        model, _ = _state(method)
        assert ("btw_norm" in model.extras) == (normalize and apply == "embedding")
        table = jnp.asarray(rng.uniform(size=(10, 2)), jnp.float32)
        index = jnp.asarray([3, 7, 1, 0])
        batch = Batch({m: jnp.asarray(rng.normal(size=(4, 4)), jnp.float32) for m in DIMS},
                      jnp.asarray([0, 1, 2, 0]), index, {})
        ctx = StepContext(jax.random.key(0), {"lam_uni": jnp.asarray(1.0)}, jnp.asarray(0),
                          {"weights": table})
        out = method.terms(model, batch, ctx)
        terms, aux = out.losses, out.logs
        z, w = model.encode(batch.inputs), table[index]
        uni = [classification_loss(model.unimodal(m, z[m]), batch.label) for m in DIMS]
        if apply == "embedding":
            scaled = {m: np.asarray(z[m] * w[:, j, None]) for j, m in enumerate(DIMS)}
            if normalize:  # LayerNorm (unit scale, zero bias at init, ε = 1e-6) over [z_a w_a; z_b w_b]
                joint = np.concatenate([scaled[m] for m in DIMS], -1)
                joint = (joint - joint.mean(-1, keepdims=True)) / np.sqrt(joint.var(-1, keepdims=True) + 1e-6)
                scaled = dict(zip(DIMS, np.split(joint, 2, axis=-1)))
            fused = model.fuse({m: jnp.asarray(v) for m, v in scaled.items()})
            np.testing.assert_allclose(terms["uni_ce"], uni[0] + uni[1], rtol=1e-5)
        else:
            fused = model.fuse(z)
            np.testing.assert_allclose(terms["uni_ce"], w[:, 0] * uni[0] + w[:, 1] * uni[1], rtol=1e-5)
        np.testing.assert_allclose(terms["ce"], classification_loss(fused, batch.label), rtol=1e-5)
        np.testing.assert_allclose(aux["btw_w/b"], w[:, 1].mean(), rtol=1e-6)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="`apply` must be one of"):
        get_method("btw", apply="logits")
    with pytest.raises(ValueError, match="`mi_estimator` must be one of"):
        get_method("btw", mi_estimator="kde")
    with pytest.raises(ValueError, match="refresh_every"):
        get_method("btw", refresh_every=0)
    with pytest.raises(ValueError, match=r"smooth=1.5"):
        get_method("btw", smooth=1.5)
    small = get_method("btw", max_examples=20)
    _, run = _state(small)
    labels = np.zeros(40, np.int64)
    logits = np.zeros((40, 3), np.float32)
    with pytest.raises(ValueError, match="max_examples >= 40"):
        _refresh(small, run, 0, ModelOutput(logits, {"a": logits, "b": logits}, {}), logits, labels)


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


def _np_ksg(x, y, k=3):
    """KSG algorithm 1 in float64 (sklearn's conventions: unit-variance columns, max-norm, strict counts)."""
    x, y = x / x.std(), y / y.std()
    dx, dy = np.abs(x[:, None] - x[None]), np.abs(y[:, None] - y[None])
    joint = np.maximum(dx, dy)
    np.fill_diagonal(joint, np.inf)
    radius = np.sort(joint, axis=1)[:, k - 1:k]
    n_x, n_y = (np.sum(d < radius, axis=1) - 1 for d in (dx, dy))   # minus the sample itself
    return max(digamma(len(x)) + digamma(k) - np.mean(digamma(n_x + 1)) - np.mean(digamma(n_y + 1)), 0.0)


def test_regression_refresh_is_gaussian_kl_minmax_times_ksg_and_the_schedule_reads_the_task_loss():
    rng = np.random.default_rng(4)
    n = 120
    fused = rng.normal(size=(n, 1))
    uni = {"a": fused + 0.3 * rng.normal(size=(n, 1)),     # close to the fused prediction: high MI
           "b": rng.normal(size=(n, 1))}                     # independent: MI ≈ 0
    labels = rng.normal(size=n).astype(np.float32)
    method = get_method("btw", max_examples=n + 3)
    _, (params, state) = _state(method)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    task = Task("regression", "l1", 1)
    context = EpochContext(0, 3, {"train": labels, "val": labels},
                           {"train": ModelOutput(f32(fused), {m: f32(u) for m, u in uni.items()}, {}),
                            "val": ModelOutput(f32(fused + 0.5), {}, {})}, task=task)
    new = method.epoch_end.update(RunState(params, state, 0, {}), context).state
    for j, m in enumerate("ab"):
        # KL(N(ŷ^m, 0.1²) ‖ N(ŷ^mm, 1)) = log(1/0.1) + (0.1² + (ŷ^m − ŷ^mm)²)/2 − 1/2, floored at 1e-5.
        kl = np.maximum(np.log(1 / 0.1) + (0.01 + (uni[m][:, 0] - fused[:, 0]) ** 2) / 2 - 0.5, 1e-5)
        mi = max(_np_ksg(uni[m][:, 0], fused[:, 0]), 1e-5)
        expected = 0.5 * (kl - kl.min()) / (kl.max() - kl.min()) * mi + 0.5 * 1.0
        np.testing.assert_allclose(new["weights"][:n, j], expected, rtol=2e-3, atol=1e-5)
        assert (mi > 0.5) if m == "a" else (mi < 0.1)
    np.testing.assert_array_equal(new["weights"][n:], 1.0)
    np.testing.assert_allclose(new["best_loss"], np.mean(np.abs(fused[:, 0] + 0.5 - labels)), rtol=1e-5)  # L1
    np.testing.assert_allclose(new["smooth"], 0.45)
    # Every KL equal (a copy of the fused prediction): the regression degenerate value 1e-4, times the MI.
    same = context._replace(outputs={**context.outputs, "train": ModelOutput(f32(fused), {"a": f32(fused),
                                                                                       "b": f32(uni["b"])}, {})})
    flat = method.epoch_end.update(RunState(params, state, 0, {}), same).state["weights"][:n, 0]
    mi = _np_ksg(fused[:, 0], fused[:, 0] + 1e-9 * rng.normal(size=n))
    assert np.ptp(np.asarray(flat)) == 0
    np.testing.assert_allclose((flat[0] - 0.5) / (0.5 * 1e-4), mi, rtol=0.02)


def _fit_regression(model, normalize):
    """BTW on a tiny regression problem, two seeds, one epoch (one refresh)."""
    from jaxmm.data.synthetic import regression

    splits = regression.splits(0, sizes={"train": 48, "val": 16, "test": 16})
    result = fit(get_method("btw", max_examples=48, normalize=normalize), [splits], [0, 1], model, OPT,
                 train_cfg(epochs=1))
    assert result.trainer.traces == 1
    state = result.state.method_state
    weights = np.asarray(state["weights"])
    assert np.isfinite(weights).all() and not np.allclose(weights, 1.0) and (weights >= 0).all()
    assert not np.allclose(weights[0], weights[1])  # two seeds, two models
    # The schedule's loss is the task's L1 on the validation outputs the hook read, before its own
    # update of the mean weights; the reported val/mae comes after it, so the two are close, not equal.
    val_mae = np.array([rec["val/mae"] for rec in result.history])
    np.testing.assert_allclose(state["best_loss"], val_mae[-1], rtol=0.02)


def test_fit_trains_regression_with_one_compilation_and_the_l1_validation_loss():
    _fit_regression(MODEL, normalize=True)


@pytest.mark.slow
def test_fit_trains_btws_moe_model_on_regression():
    # BTW's model in miniature: projection, the MoE cross encoder, the SubNet head; no extra LayerNorm.
    _fit_regression(dataclasses.replace(MODEL, projection=4, fusion="moe", fusion_hidden=(4,),
                                        fusion_options={"num_layers": 1, "num_experts": 4, "expert_hidden": 8}),
                    normalize=False)
