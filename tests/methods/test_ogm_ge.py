"""OGM-GE method: fused-head slices, hand-computed modulation of the dominant encoder, fit, bad options."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import MODEL, OPT, tiny_splits, train_cfg

from jaxmm.methods import get_method
from jaxmm.methods._responses import fusion_slices
from jaxmm.train.loop import fit

from ._onestep import assert_traces, setup, slices_by_hand, step, term_gradients, true_class_prob


def test_fusion_slices_are_the_linear_head_slices():
    model, batch, _ = setup(get_method("ogm_ge"), dims={"a": 3, "b": 4, "c": 2})
    features = model.encode(batch.inputs)
    slices = fusion_slices(model, features)
    for m, expected in slices_by_hand(model, batch).items():
        np.testing.assert_allclose(slices[m], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sum(slices.values()), model.fuse(features), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epoch, active", [(0, True), (51, False)])
def test_dominant_encoder_update_is_scaled_by_the_hand_coefficient(epoch, active):
    method = get_method("ogm_ge", generalization=False)
    model, batch, ctx = setup(method, scale={"b": 3.0})
    ctx = dataclasses.replace(ctx, hparams={"alpha": jnp.asarray(0.3)}, epoch=jnp.asarray(epoch))
    # Scores by hand from the slices W_m x_m + b/2 of the linear concat head.
    s = {m: true_class_prob(v, batch.label).sum() for m, v in slices_by_hand(model, batch).items()}
    dom, other = ("a", "b") if s["a"] / s["b"] >= s["b"] / s["a"] else ("b", "a")
    k = 1 - math.tanh(0.3 * s[dom] / s[other]) if active else 1.0

    update, metrics, _ = step(method, model, batch, ctx)
    ref = term_gradients(method, model, batch, ctx)["ce"]
    signals = method.terms(model, batch, ctx).signals  # what the transformation receives
    for m in "ab":
        np.testing.assert_allclose(metrics[f"score/{m}"], s[m], rtol=1e-5)
        np.testing.assert_allclose(signals["scores"][m], s[m], rtol=1e-5)
    np.testing.assert_allclose(signals["alpha"], 0.3)
    assert k < 0.9 or not active
    # the applied coefficients are logged per modality (1 outside the window)
    np.testing.assert_allclose([metrics[f"coef/{dom}"], metrics[f"coef/{other}"]], [k, 1.0], rtol=1e-5)
    enc, ref_enc = update["encoders"], ref["encoders"]
    np.testing.assert_allclose(enc[dom]["layers"][0]["kernel"], k * ref_enc[dom]["layers"][0]["kernel"],
                               rtol=1e-5, atol=1e-7)
    for tree, ref_tree in ((enc[dom]["layers"][0]["bias"], ref_enc[dom]["layers"][0]["bias"]),
                           (enc[other], ref_enc[other]), (update["fusion_head"], ref["fusion_head"])):
        jax.tree.map(lambda u, g: np.testing.assert_allclose(u, g, rtol=1e-5, atol=1e-7), tree, ref_tree)


def test_probe_heads_do_not_train_the_encoders():
    method = get_method("ogm_ge", scores="heads")
    model, batch, ctx = setup(method)
    grads = term_gradients(method, model, batch, ctx)["uni_ce"]
    assert all(not np.any(g) for g in jax.tree.leaves(grads["encoders"]))
    assert all(np.any(g) for g in jax.tree.leaves(grads["unimodal_heads"]))
    terms = method.terms(model, batch, ctx)
    out = model(batch.inputs)
    p = true_class_prob(np.asarray(out.unimodal_logits["a"]), batch.label)
    np.testing.assert_allclose(terms.logs["score/a"], p.sum(), rtol=1e-5)
    np.testing.assert_allclose(terms.signals["scores"]["a"], p.sum(), rtol=1e-5)


def test_fit_trains_once_compiled_with_alpha_vmapped():
    method = get_method("ogm_ge")
    r = fit(method, [tiny_splits()], [0, 0], MODEL, OPT, train_cfg(epochs=3),
            hparams=[{"alpha": 0.1}, {"alpha": 5.0}])
    assert r.trainer.traces == 1
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert all(t["acc"] > 0.4 and "acc/a" in t for t in r.test)  # 3 classes: chance is 1/3
    # Same seed, different alpha: the runs differ only through the modulation.
    kernels = r.state.params["encoders"]["a"]["layers"][0]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    signals = assert_traces(get_method("ogm_ge"), ["score/a", "score/b", "score/c", "coef/a", "coef/b", "coef/c"],
                            ["scores", "alpha", "key"])
    assert set(signals["scores"]) == {"a", "b", "c"}


@pytest.mark.parametrize("options, match", [
    (dict(scores="probe"), "`scores` must be one of"),
    (dict(tensors="bn"), "`tensors` must be one of"),
    (dict(window=(5, 2)), "`window`"),
    (dict(window=3), "`window` must be"),
    (dict(ratio_offset=-1.0), "`ratio_offset`"),
    (dict(gamma=1.0), "no option"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_method("ogm_ge", **options)
