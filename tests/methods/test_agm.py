"""AGM method: scores and coefficients by hand on a toy model, modulated gradients, fit, bad options."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import MODEL, OPT, tiny_splits, train_cfg
from flax import nnx

from jaxmm.methods import get_method
from jaxmm.methods._responses import zero_input
from jaxmm.monitors.cumulative_mean import CumulativeMeanState
from jaxmm.train.loop import fit

from ._onestep import assert_traces, setup, step, term_gradients

RUNNING = CumulativeMeanState({"a": jnp.asarray(0.4), "b": jnp.asarray(1.2)}, jnp.asarray(3))


def _passes(model, inputs):
    """f(a, b), f(a, 0), f(0, b): fused logits with one modality's input zeroed."""
    zero = lambda m: {**inputs, m: jnp.zeros_like(inputs[m])}
    return model(inputs).logits, model(zero("b")).logits, model(zero("a")).logits


def _by_hand(model, batch, alpha):
    f_ab, f_a0, f_0b = (np.asarray(f) for f in _passes(model, batch.inputs))
    o = {"a": (f_ab - f_0b + f_a0) / 2, "b": (f_ab - f_a0 + f_0b) / 2}
    y = np.asarray(batch.label)
    logp = {m: v - np.log(np.exp(v).sum(1, keepdims=True)) for m, v in o.items()}
    s = {m: np.mean(-np.maximum(lp[np.arange(len(y)), y], math.log(1e-8))) for m, lp in logp.items()}
    bar = {m: float(v) for m, v in RUNNING.mean.items()}
    kappa = {m: math.exp(alpha * min(math.exp(bar[n] - bar[m]) - math.exp(s[n] - s[m]), 10.0))
             for m, n in (("a", "b"), ("b", "a"))}
    return s, kappa


def test_scores_and_coefficients_match_a_hand_computation():
    method = get_method("agm")
    model, batch, ctx = setup(method)
    ctx = dataclasses.replace(ctx, state={"running": RUNNING}, hparams={"alpha": jnp.asarray(2.0)})
    s, kappa = _by_hand(model, batch, 2.0)
    out = method.terms(model, batch, ctx)
    terms = out.losses
    for m in "ab":
        np.testing.assert_allclose(out.logs[f"score/{m}"], s[m], rtol=1e-5)
        np.testing.assert_allclose(out.logs[f"kappa/{m}"], kappa[m], rtol=1e-4)
        np.testing.assert_allclose(out.signals["coefficients"][m], kappa[m], rtol=1e-4)  # what the transform gets
        np.testing.assert_allclose(out.state["running"].mean[m], (3 * RUNNING.mean[m] + s[m]) / 4, rtol=1e-5)
    assert int(out.state["running"].count) == 4
    assert abs(kappa["a"] - 1) > 0.1  # the modulation is not trivial here
    # The loss value is the plain fused CE (only its gradient is modulated).
    logits = np.asarray(model(batch.inputs).logits)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(terms["ce"], -logp[np.arange(12), np.asarray(batch.label)], rtol=1e-5)
    # Outside the window: kappa = 1, or (outside="hold", the official hooks) the last kappa used inside it.
    out = method.terms(model, batch, dataclasses.replace(ctx, epoch=jnp.asarray(20)))
    assert float(out.logs["kappa/a"]) == float(out.logs["kappa/b"]) == 1.0
    assert float(out.signals["coefficients"]["a"]) == float(out.signals["coefficients"]["b"]) == 1.0
    held = {"a": jnp.asarray(1.7), "b": jnp.asarray(0.6)}
    hold = get_method("agm", outside="hold")
    for epoch, expected in ((20, held), (0, kappa)):
        out = hold.terms(model, batch, dataclasses.replace(ctx, epoch=jnp.asarray(epoch),
                                                           state={"running": RUNNING, "kappa": held}))
        for m in "ab":
            np.testing.assert_allclose(out.logs[f"kappa/{m}"], expected[m], rtol=1e-4)
            np.testing.assert_allclose(out.state["kappa"][m], expected[m], rtol=1e-4)


def test_logits_mode_gradient_follows_the_scaled_responses():
    """∇ = ½(κa+κb)∇f(a,b)ᵀg + ½(κa−κb)∇f(a,0)ᵀg + ½(κb−κa)∇f(0,b)ᵀg, g = ∂CE/∂logits.

    The gradient the official backward hooks produce (baselines.md §4, step 7).
    """
    method = get_method("agm")
    model, batch, ctx = setup(method)
    ctx = dataclasses.replace(ctx, state={"running": RUNNING}, hparams={"alpha": jnp.asarray(2.0)})
    _, kappa = _by_hand(model, batch, 2.0)
    ka, kb = kappa["a"], kappa["b"]
    probs = jax.nn.softmax(model(batch.inputs).logits)
    g = (probs - jax.nn.one_hot(batch.label, 3)) / 12
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def surrogate(p):
        f_ab, f_a0, f_0b = _passes(nnx.merge(graphdef, p, rest, copy=True), batch.inputs)
        return jnp.sum(g * ((ka + kb) / 2 * f_ab + (ka - kb) / 2 * f_a0 + (kb - ka) / 2 * f_0b))

    expected = jax.grad(surrogate)(params)
    got = term_gradients(method, model, batch, ctx)["ce"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got, expected)


def test_groups_mode_scales_each_encoder_by_its_coefficient():
    method = get_method("agm", mode="groups", clip_threshold=None)
    model, batch, ctx = setup(method)
    ctx = dataclasses.replace(ctx, state={"running": RUNNING}, hparams={"alpha": jnp.asarray(2.0)})
    _, kappa = _by_hand(model, batch, 2.0)
    update, _, _ = step(method, model, batch, ctx)
    ref = term_gradients(method, model, batch, ctx)["ce"]
    for m in "ab":
        jax.tree.map(lambda u, r, m=m: np.testing.assert_allclose(u, kappa[m] * r, rtol=1e-4, atol=1e-7),
                     update["encoders"][m], ref["encoders"][m])
    jax.tree.map(lambda u, r: np.testing.assert_allclose(u, r, rtol=1e-5, atol=1e-7), update["fusion_head"],
                 ref["fusion_head"])


def test_three_modality_responses_sum_to_the_fused_logits():
    method = get_method("agm")
    model, batch, ctx = setup(method, dims={"a": 3, "b": 2, "c": 4})
    out = method.forward(model, batch.inputs, ctx)
    assert set(out.unimodal_logits) == {"a", "b", "c"}
    np.testing.assert_allclose(sum(out.unimodal_logits.values()), out.logits, rtol=1e-5, atol=1e-6)


def test_absent_frames_are_zero_after_normalisation():
    # uint8 frames are normalised inside the encoder: their absent value is a float 0, not a black frame.
    zero = zero_input(jnp.full((4, 3, 2, 8, 8), 255, jnp.uint8))
    assert zero.shape == (1, 3, 2, 8, 8) and zero.dtype == jnp.float32 and not np.any(zero)
    assert zero_input(jnp.ones((4, 5), jnp.bfloat16)).dtype == jnp.bfloat16


def test_fit_trains_once_compiled_and_keeps_running_scores():
    r = fit(get_method("agm"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    assert r.trainer.traces == 1
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    running = r.state.method_state["running"]
    np.testing.assert_array_equal(running.count, [9, 9])  # 3 epochs x 3 steps, carried across epochs
    assert np.all(running.mean["a"] > 0) and "train/kappa/a" in r.history[-1]
    assert r.test[0]["acc"] > 0.4 and all("acc/a" in t for t in r.test)  # 3 classes: chance is 1/3


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    assert_traces(get_method("agm"), ["kappa/a", "kappa/b", "kappa/c"])


@pytest.mark.parametrize("options, match", [
    (dict(mode="hooks"), "`mode` must be one of"),
    (dict(outside="reset"), "`outside` must be one of"),
    (dict(cap=0.0), "`cap` must be positive"),
    (dict(window=(3, 1)), "`window`"),
    (dict(max_norm=0.0), "`max_norm` must be positive"),
    (dict(clip_threshold=-1.0), "`clip_threshold` must be positive"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_method("agm", **options)
