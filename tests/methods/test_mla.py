"""MLA method: alternation with frozen inactive encoders, OWM projection inside the trainer, fusion, options, fit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.methods import StepContext, get_method
from jaxmm.methods.mla import fuse_predictions
from jaxmm.tasks import Task
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.config import OptimizerConfig
from jaxmm.train.loop import fit
from jaxmm.train.trainer import Trainer, resolve_hparams

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import make_model
from ._onestep import assert_traces

DIMS = {"a": 4, "b": 4}
WD = 0.01
SGD = OptimizerConfig("sgd", 1.0, WD, momentum=0.0)  # θ' = θ − (ĝ + wd·θ): the applied ĝ is readable


def _owm(p, r, alpha):
    k = p @ r[:, None]
    new = p - (k @ k.T) / (alpha + r[None, :] @ k)
    return new / np.linalg.norm(new)


def _model(trainer, state):
    one = lambda tree: jax.tree.map(lambda v: v[0], tree)
    return nnx.merge(trainer.train_def, one(state.params), one(state.rest))


def _head_kernel_gradient(model, modality, batch):
    """Closed form ``∂ mean_i CE(z_i W + b, y_i) / ∂W = zᵀ (softmax(zW + b) − onehot(y)) / B`` and ``r = mean z``."""
    z = np.asarray(model.encode_one(modality, jnp.asarray(batch.inputs[modality][0])), np.float64)
    head = model.unimodal_heads["a"].layers[0]  # the shared head: first sorted modality's
    logits = z @ np.asarray(head.kernel[...], np.float64) + np.asarray(head.bias[...], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return z.T @ (p - np.eye(3)[batch.label[0]]) / len(z), z.mean(0)


def test_alternating_steps_freeze_the_other_encoder_and_project_the_shared_head():
    method = get_method("mla")
    trainer = Trainer(method, DIMS, Task("classification", "auto", 3), MODEL, SGD)
    hp = resolve_hparams(method, SGD, [{}])
    data = list(batches(stack_runs([tiny_splits().train]), np.arange(40)[None], 16))[:2]
    state = trainer.init([0], hp, jax.tree.map(lambda x: x[0], data[0]))
    init = jax.tree.map(np.array, state.params)
    kernel = lambda p: np.asarray(p["unimodal_heads"]["a"]["layers"][0]["kernel"][0])
    projector = np.eye(8)
    for step, (active, frozen, batch) in enumerate([("a", "b", data[0]), ("b", "a", data[1]), ("a", "b", data[0])]):
        before = jax.tree.map(np.array, state.params)
        g, r = _head_kernel_gradient(_model(trainer, state), active, batch)
        state, metrics = trainer.step(state, batch, hp)
        assert float(metrics[f"active/{active}"][0]) == 1.0
        jax.tree.map(np.testing.assert_array_equal, state.params["encoders"][frozen], before["encoders"][frozen])
        assert not np.allclose(state.params["encoders"][active]["layers"][0]["kernel"],
                               before["encoders"][active]["layers"][0]["kernel"])
        jax.tree.map(np.testing.assert_array_equal, state.params["unimodal_heads"]["b"], init["unimodal_heads"]["b"])
        g_hat = kernel(before) - kernel(state.params) - WD * kernel(before)
        if step > 0:  # the projector is updated before every step but the first; α = 0.1 in the first epoch
            projector = _owm(projector, r, 0.1)
        np.testing.assert_allclose(g_hat, projector @ g, rtol=1e-4, atol=1e-6)
        if step == 1:  # P r = α/(α + ‖r‖²) r / ‖P‖_F: the mean feature's direction is nearly removed
            shrink = 0.1 / (0.1 + r @ r) / np.linalg.norm(np.eye(8) - np.outer(r, r) / (0.1 + r @ r))
            np.testing.assert_allclose(r @ g_hat, shrink * (r @ g), rtol=1e-3, atol=1e-6)
            assert np.linalg.norm(r @ g_hat) < 0.2 * np.linalg.norm(r @ g)


def test_fusion_rules_by_hand():
    ya = jnp.array([[0.0, 0.0], [4.0, 0.0]])
    yb = jnp.array([[2.0, 0.0], [0.0, 0.0]])
    h = lambda y: -np.sum(jax.nn.softmax(y) * jax.nn.log_softmax(y), -1)
    ea, eb = h(ya), h(yb)
    wa = np.exp(-ea) / (np.exp(-ea) + np.exp(-eb))  # = exp(max e − e_a) / Σ_j exp(max e − e_j)
    np.testing.assert_allclose(fuse_predictions({"a": ya, "b": yb}), wa[:, None] * ya + (1 - wa)[:, None] * yb,
                               rtol=1e-5)
    np.testing.assert_allclose(fuse_predictions({"a": ya, "b": yb}, "fixed", (0.55, 0.45)), 0.55 * ya + 0.45 * yb,
                               rtol=1e-6)
    batch_h = lambda y: -np.sum(jax.nn.softmax(y, axis=0) * jax.nn.log_softmax(y, axis=0))
    wa = 1.0 / (1.0 + np.exp(batch_h(ya) - batch_h(yb)))
    np.testing.assert_allclose(fuse_predictions({"a": ya, "b": yb}, "entropy_batch"), wa * ya + (1 - wa) * yb,
                               rtol=1e-5)
    binary = fuse_predictions({"a": jnp.array([[3.0]]), "b": jnp.array([[-3.0]])})  # equal entropies
    np.testing.assert_allclose(binary, [[0.0]], atol=1e-6)


def test_forward_fuses_the_shared_head_outputs():
    method = get_method("mla", fusion="fixed", fixed_weights=(0.3, 0.7))
    model = make_model(method, DIMS, 3, MODEL, 0)
    x = {m: jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32) for m in DIMS}
    out = method.forward(model, x, StepContext(modalities=tuple(DIMS)))
    head = model.unimodal_heads["a"]
    for m in DIMS:
        np.testing.assert_allclose(out.unimodal_logits[m], head(model.encode_one(m, x[m])), rtol=1e-6)
    np.testing.assert_allclose(out.logits, 0.3 * out.unimodal_logits["a"] + 0.7 * out.unimodal_logits["b"],
                               rtol=1e-6)


@pytest.mark.parametrize("options, match", [
    ({"fusion": "mean"}, "unknown fusion"),
    ({"fusion": "fixed"}, "needs fixed_weights"),
    ({"projection": "project"}, "`projection` must be one of"),
    ({"base": 1.5}, "`base` must be in"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_method("mla", **options)


def _terms_setup(method):
    model = make_model(method, DIMS, 3, MODEL, 0)
    batch = jax.tree.map(lambda v: jnp.asarray(v[0]), next(batches(stack_runs([tiny_splits().train]),
                                                                    np.arange(40)[None], 16)))
    ctx = StepContext(jax.random.PRNGKey(0), {}, jnp.asarray(0), method.init_state(model, batch), jnp.asarray(0),
                      tuple(model.modalities))
    return model, batch, ctx


def test_bad_models_are_named():
    method = get_method("mla", fusion="fixed", fixed_weights=(1.0,))
    with pytest.raises(ValueError, match="one weight per modality"):
        method.terms(*_terms_setup(method))
    method = get_method("mla")
    model, batch, ctx = _terms_setup(method)
    model.encoders["b"] = type(model.encoders["b"])([4, 5], activate_output=True, rngs=nnx.Rngs(1))  # width 5 ≠ 8
    with pytest.raises(ValueError, match="one feature width for every modality"):
        method.terms(model, batch, ctx)


def test_fit_trains_and_tracks_the_epoch_fraction():
    r = fit(get_method("mla"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    losses = np.array([h["train/loss"] for h in r.history])
    assert r.trainer.traces == 1
    assert (losses[-1] < losses[0]).all()
    assert min(t["acc"] for t in r.test) > 0.4  # 3 classes
    np.testing.assert_array_equal(r.state.method_state["steps_per_epoch"], [3, 3])  # 40 examples, batch 16
    np.testing.assert_array_equal(r.state.method_state["epoch_start"], [9, 9])


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    assert_traces(get_method("mla"), ["active/c"], ["features", "epoch_fraction"])
