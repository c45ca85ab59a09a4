"""PMR: coefficients and prototype CE by hand, the epoch-end prototype refresh, end to end."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.methods import StepContext, get_method
from jaxmm.train.loop import fit

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import jit_terms
from ._onestep import assert_traces, setup

DIMS = {"a": 4, "b": 4}


def _setup(method, alpha=2.0):
    model, batch, _ = setup(method, DIMS, batch_size=6, cfg=MODEL)
    batch = batch._replace(label=jnp.asarray([0, 1, 2, 0, 1, 2]))
    z = {m: np.asarray(v, np.float64) for m, v in model.encode(batch.inputs).items()}
    y = np.asarray(batch.label)
    # "a": each class prototype sits on its examples' mean (a strong modality); "b": prototypes
    # shuffled across classes (a weak one).
    protos = {"a": np.stack([z["a"][y == k].mean(0) for k in range(3)]),
              "b": np.stack([z["b"][y == k].mean(0) for k in (2, 0, 1)]) + 0.3}
    ctx = StepContext(jax.random.key(0), {"alpha": jnp.asarray(alpha), "mu": jnp.asarray(0.0)}, jnp.asarray(0),
                      {"prototypes": {m: jnp.asarray(p, jnp.float32) for m, p in protos.items()}})
    return model, batch, ctx, z, y, protos


def _by_hand(z, y, protos, alpha, rule):
    logits = {m: -np.linalg.norm(z[m][:, None] - protos[m][None], axis=-1) for m in z}
    logp = {m: q - np.log(np.exp(q).sum(-1, keepdims=True)) for m, q in logits.items()}
    scores = np.array([np.exp(logp[m][np.arange(len(y)), y]).sum() for m in z])
    if rule == "code":
        coef = alpha * (scores < scores.max())
    else:
        coef = alpha * np.tanh(scores.max() / scores - 1)
    pce = sum(c * -logp[m][np.arange(len(y)), y] for c, m in zip(coef, z))
    return scores, coef, pce


@pytest.mark.parametrize("rule", ["code", "continuous"])
def test_coefficients_and_prototype_ce_match_hand_computation(rule):
    method = get_method("pmr", rule=rule)
    model, batch, ctx, z, y, protos = _setup(method, alpha=2.0)
    out = jit_terms(method, model)(batch, ctx)
    terms, aux = out.losses, out.logs
    scores, coef, pce = _by_hand(z, y, protos, 2.0, rule)
    assert scores[0] > scores[1]  # "b" is the weaker modality
    np.testing.assert_allclose([aux["pmr_coef/a"], aux["pmr_coef/b"]], coef, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["pmr"], pce, rtol=1e-4, atol=1e-5)
    if rule == "code":
        assert coef.tolist() == [0.0, 2.0]


def test_modulation_window_and_entropy_schedule():
    method = get_method("pmr", modulation_start=2, modulation_end=4)
    weights = [float(method.term_weights(StepContext(None, {}, jnp.asarray(e), {}))["pmr"]) for e in range(6)]
    assert weights == [0, 0, 1, 1, 1, 0]
    # The entropy regulariser lowers the loss by mu * H(dominant prototype softmax) in its epochs only.
    method = get_method("pmr", entropy_epochs=1)
    model, batch, ctx, z, y, protos = _setup(method)
    terms = jit_terms(method, model)
    plain = terms(batch, ctx).losses["pmr"]
    on = dataclasses.replace(ctx, hparams={**ctx.hparams, "mu": jnp.asarray(0.5)})
    q = -np.linalg.norm(z["a"][:, None] - protos["a"][None], axis=-1)
    p = np.exp(q) / np.exp(q).sum(-1, keepdims=True)
    entropy = -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(terms(batch, on).losses["pmr"], plain - 0.5 * entropy, rtol=1e-4, atol=1e-5)
    later = dataclasses.replace(on, epoch=jnp.asarray(1))
    np.testing.assert_allclose(terms(batch, later).losses["pmr"], plain, rtol=1e-6)


def test_fit_refreshes_prototypes_to_class_means_of_the_train_features():
    method = get_method("pmr", proto_fraction=1.0, momentum=0.5)
    seen = []

    def record(run, context):  # the prototypes before each refresh (one callback per run)
        jax.debug.callback(lambda protos: seen.append(jax.tree.map(np.array, protos)), run.state["prototypes"])
        return method.epoch_end.update(run, context)

    splits = tiny_splits()
    hook = dataclasses.replace(method.epoch_end, update=record)
    r = fit(dataclasses.replace(method, epoch_end=hook), [splits], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    assert len(seen) == 3 * 2  # 3 epochs x 2 runs
    before_last = {m: np.stack([s[m] for s in seen[-2:]]) for m in DIMS}  # [R, C, D]
    assert r.trainer.traces == 1
    losses = np.array([h["train/term/ce"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert {"acc/a", "acc/b"} <= set(r.test[0]) and max(t["acc"] for t in r.test) > 0.5  # chance: 1/3
    data = jax.tree.map(lambda x: np.stack([x, x]), splits.train.take(np.arange(len(splits.train))))
    feats = r.trainer.outputs(r.state, data, 64).features
    y = splits.train.label
    for m in DIMS:
        means = np.stack([feats[m][:, y == k].mean(1) for k in range(3)], axis=1)  # [R, C, D]
        expected = 0.5 * before_last[m] + 0.5 * means  # EMA after the first epoch
        np.testing.assert_allclose(r.state.method_state["prototypes"][m], expected, rtol=1e-4, atol=1e-5)


def test_traces_on_the_audio_visual_model_and_three_modalities():
    assert_traces(get_method("pmr"), ["pmr_coef/a", "pmr_coef/b", "pmr_coef/c", "term/probe_ce"])


def test_bad_options():
    with pytest.raises(ValueError, match="unknown rule"):
        get_method("pmr", rule="ratio")
    with pytest.raises(ValueError, match="proto_fraction"):
        get_method("pmr", proto_fraction=0.0)
    with pytest.raises(ValueError, match="modulation_start <= modulation_end"):
        get_method("pmr", modulation_start=5, modulation_end=1)
