"""InfoReg method: the dominant encoder's proximal pull only in its window, fit, bad options."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import MODEL, OPT, tiny_splits, train_cfg
from flax import nnx

from jaxmm.methods import get_method
from jaxmm.train.loop import fit
from jaxmm.models.groups import param_labels

from ._onestep import assert_traces, setup, slices_by_hand, step, term_gradients, true_class_prob


@pytest.mark.parametrize("window_open", [True, False])
def test_only_the_dominant_encoder_is_pulled_and_only_in_its_window(window_open):
    method = get_method("inforeg", scales=0.5)
    model, batch, ctx = setup(method, scale={"b": 3.0})
    s = {m: true_class_prob(v, batch.label).sum() for m, v in slices_by_hand(model, batch).items()}
    dom, other = ("a", "b") if s["a"] > s["b"] else ("b", "a")
    beta = 0.5 * math.exp(math.tanh(s[dom] - s[other])) if window_open else 0.0

    params = nnx.state(model, nnx.Param)
    init = method.transform.build(model.modalities, param_labels).init(params)
    # Mid-epoch 0: the snapshot θ_e = θ − 0.1; a closed window has a flat Fisher-trace history (k_e = 0).
    monitor = init.monitor._replace(epoch=jnp.asarray(0))
    if not window_open:
        monitor = monitor._replace(history=jnp.ones_like(monitor.history), completed=jnp.asarray(1))
    state = init._replace(epoch=jnp.asarray(0), monitor=monitor,
                          snapshot=jax.tree.map(lambda p: p - 0.1, init.snapshot))
    update, metrics, new = step(method, model, batch, ctx, transform_state=state)
    signals = method.terms(model, batch, ctx).signals  # what the transformation receives
    for m in "ab":
        np.testing.assert_allclose(metrics[f"score/{m}"], s[m], rtol=1e-5)
        np.testing.assert_allclose(signals["scores"][m], s[m], rtol=1e-5)
    grads = term_gradients(method, model, batch, ctx)
    plain = jax.tree.map(lambda ce, uni: ce + uni, grads["ce"], grads["uni_ce"])  # lam_uni = 1
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, g + beta * 0.1, rtol=1e-4, atol=1e-6),
                 update["encoders"][dom], plain["encoders"][dom])
    for tree, ref in ((update["encoders"][other], plain["encoders"][other]),
                      (update["fusion_head"], plain["fusion_head"])):
        jax.tree.map(lambda u, g: np.testing.assert_allclose(u, g, rtol=1e-4, atol=1e-7), tree, ref)
    np.testing.assert_allclose(new.transform_state.beta, [beta if m == dom else 0.0 for m in "ab"], rtol=1e-5)
    np.testing.assert_allclose([metrics[f"beta/{m}"] for m in "ab"], [beta if m == dom else 0.0 for m in "ab"],
                               rtol=1e-5)


def test_heads_variant_scores_the_unimodal_heads():
    method = get_method("inforeg", unimodal="heads")
    model, batch, ctx = setup(method)
    terms = method.terms(model, batch, ctx)
    out = model(batch.inputs)
    score = true_class_prob(np.asarray(out.unimodal_logits["b"]), batch.label).sum()
    np.testing.assert_allclose(terms.logs["score/b"], score, rtol=1e-5)
    np.testing.assert_allclose(terms.signals["scores"]["b"], score, rtol=1e-5)
    assert set(terms.losses) == {"ce", "uni_ce"}
    # the evaluation pass is the plain model: its own unimodal heads, not the fused head's slices
    fwd = method.forward(model, batch.inputs, ctx)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), tuple(fwd), tuple(out))


def test_fit_trains_once_compiled_and_tracks_the_window():
    r = fit(get_method("inforeg"), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=3))
    assert r.trainer.traces == 1
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert r.test[0]["acc"] > 0.4 and "acc/a" in r.test[0]  # 3 classes: chance is 1/3
    tx_state = r.state.transform_state
    # Epochs 0 and 1 closed (the third is still open); their Fisher traces are positive.
    np.testing.assert_array_equal(tx_state.monitor.completed, [2])
    assert np.all(tx_state.monitor.history[0, :, -2:] > 0)
    assert np.count_nonzero(tx_state.beta) <= 1  # at most the dominant modality is regulated


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    signals = assert_traces(get_method("inforeg"), ["score/a", "score/b", "score/c", "beta/a", "beta/b", "beta/c"],
                            ["scores"])
    assert set(signals["scores"]) == {"a", "b", "c"}


@pytest.mark.parametrize("options, match", [
    (dict(unimodal="probe"), "`unimodal` must be one of"),
    (dict(scales=-1.0), "must be non-negative"),
    (dict(scales={"a": 1.0, "b": -0.5}), "scales\\['b'\\]"),
    (dict(threshold=-0.1), "`threshold`"),
    (dict(window=0), "`window` must be an int >= 1"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_method("inforeg", **options)


def test_unknown_monitored_modality_is_named():
    method = get_method("inforeg", monitored="audio")
    with pytest.raises(ValueError, match="`monitored` must be None or one of"):
        method.transform.build(("a", "b"), param_labels)
