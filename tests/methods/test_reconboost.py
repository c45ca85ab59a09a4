"""ReconBoost: stage schedule, reconcilement by hand, active-learner-only updates, ensemble inference."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.methods import StepContext, get_method
from jaxmm.methods.reconboost import phase
from jaxmm.train.loop import fit

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import jit_terms
from ._onestep import assert_traces, setup

DIMS = {"a": 4, "b": 4}


def _setup(method, epoch=0):
    model, batch, ctx = setup(method, DIMS, batch_size=6, cfg=MODEL)
    batch = batch._replace(label=jnp.asarray([0, 1, 2, 0, 1, 2]))
    ctx = dataclasses.replace(ctx, epoch=jnp.asarray(epoch))
    return model, batch, ctx


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_schedule_alternates_modality_and_rectification_phases():
    stages, boosting = zip(*(phase(e, 2, 1) for e in range(7)))
    assert stages == (0, 0, 0, 1, 1, 1, 2) and boosting == (True, True, False, True, True, False, True)
    method = get_method("reconboost", epochs_per_stage=2, correct_epochs=1)
    w = [method.term_weights(StepContext(None, {"alpha": 0.5}, jnp.asarray(e), {})) for e in (0, 2, 3)]
    assert [float(x["boost"]) for x in w] == [1.0, 0.0, 1.0] and float(w[1]["rectify"]) == 1.0
    assert [float(x["ga"]) for x in w] == [0.0, 0.0, 0.5]  # GA from the second stage on


@pytest.mark.parametrize("epoch, active, other", [(0, "a", "b"), (2, "b", "a")])
def test_paper_form_is_ce_minus_kl_to_the_others_by_hand(epoch, active, other):
    method = get_method("reconboost", form="paper", epochs_per_stage=1, correct_epochs=1)
    model, batch, ctx = _setup(method, epoch)
    ctx = dataclasses.replace(ctx, hparams={**ctx.hparams, "lam": jnp.asarray(0.7)})
    model.extras["boost_rate"].value[...] = jnp.asarray(1.3)
    out = jit_terms(method, model)(batch, ctx)
    terms, aux = out.losses, out.logs
    out = model(batch.inputs)
    log_p = _log_softmax(out.unimodal_logits[active])
    log_q = _log_softmax(1.3 * np.asarray(out.unimodal_logits[other]))
    y = np.asarray(batch.label)
    ce = -log_p[np.arange(6), y]
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    np.testing.assert_allclose(terms["boost"], ce - 0.7 * kl, rtol=1e-5, atol=1e-5)
    ensemble = 1.3 * (np.asarray(out.unimodal_logits["a"]) + np.asarray(out.unimodal_logits["b"]))
    np.testing.assert_allclose(terms["rectify"], -_log_softmax(ensemble)[np.arange(6), y], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(method.forward(model, batch.inputs, ctx).logits, ensemble, rtol=1e-5, atol=1e-5)
    assert int(aux["active_modality"]) == list(DIMS).index(active)


def test_code_form_weights_the_ce_by_the_others_confidence():
    method = get_method("reconboost")
    model, batch, ctx = _setup(method)
    terms = jit_terms(method, model)(batch, ctx).losses
    out = model(batch.inputs)
    y = np.asarray(batch.label)
    ce = -_log_softmax(out.unimodal_logits["a"])[np.arange(6), y]
    q_y = np.exp(_log_softmax(out.unimodal_logits["b"])[np.arange(6), y])
    np.testing.assert_allclose(terms["boost"], (5.0 - q_y) * ce / 3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["ga"], 0.0, atol=1e-7)  # snapshot = current learner at start


def test_only_the_active_learner_moves_and_the_ensemble_trains():
    method = get_method("reconboost", epochs_per_stage=1, correct_epochs=1)
    # the optimiser's moments restart at every phase boundary (after every epoch here)
    assert [method.epoch_end.reset_optimizer(e) for e in range(4)] == [True] * 4
    assert not get_method("reconboost", epochs_per_stage=2, correct_epochs=1).epoch_end.reset_optimizer(0)
    snapshots = []

    def record(run, context):  # the parameters at the end of each epoch (one run)
        jax.debug.callback(lambda params: snapshots.append(jax.tree.map(np.array, params)), run.params)
        return method.epoch_end.update(run, context)

    hook = dataclasses.replace(method.epoch_end, update=record)
    r = fit(dataclasses.replace(method, epoch_end=hook), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=5))
    assert len(snapshots) == 5
    params = [None] + snapshots  # params[e]: at the start of epoch e
    group = lambda p, m: [p["encoders"][m], p["unimodal_heads"][m]]
    same = lambda x, y: all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
    # epoch 0: modality phase of "a"; 1: rectification; 2: "b"; 3: rectification; 4: "a". The phases
    # after a rectification need the optimiser reset: Adam's moments would move the frozen learner.
    for epoch, active, frozen in ((2, "b", "a"), (4, "a", "b")):
        before, after = params[epoch], params[epoch + 1]
        assert same(group(before, frozen), group(after, frozen)), epoch
        assert same(before["extras"], after["extras"]), epoch  # η is trained only in rectification
        assert not same(group(before, active), group(after, active)), epoch
    assert not same(params[1]["extras"], params[2]["extras"])
    assert r.trainer.traces == 1
    losses = [h["train/term/rectify"][0] for h in r.history]
    assert losses[3] < losses[1]
    assert r.test[0]["acc"] > 0.5  # 3 classes: chance is 1/3


def test_traces_on_the_audio_visual_model_and_three_modalities():
    assert_traces(get_method("reconboost"), ["boost_rate", "active_modality", "term/ga"])


def test_bad_options():
    with pytest.raises(ValueError, match="`form` must be one of"):
        get_method("reconboost", form="boost")
    with pytest.raises(ValueError, match="`ga` must be one of"):
        get_method("reconboost", ga="on")
    with pytest.raises(ValueError, match="epochs_per_stage"):
        get_method("reconboost", epochs_per_stage=0)
