"""RedReg method: observations, the applied update inside the trainer, modality dropout, options, fit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.methods import StepContext, get_method
from jaxmm.methods.redreg import drop_modalities, drop_probability, noisy_input_views
from jaxmm.monitors.redundancy_phase import co_information_similarity
from jaxmm.tasks import Task
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.config import OptimizerConfig
from jaxmm.train.loop import fit
from jaxmm.train.trainer import Trainer, resolve_hparams

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import make_model
from ._onestep import assert_traces

DIMS = {"a": 4, "b": 4}
SGD = OptimizerConfig("sgd", 1.0, 0.0, momentum=0.0)  # update = -gradient: the applied ĝ is readable
TASK = Task("classification", "auto", 3)


def _two_batches():
    data = stack_runs([tiny_splits().train])
    return list(batches(data, np.arange(32)[None], 16))


def _leaves_by_group(tree):
    return {m: jax.tree.leaves(tree["encoders"][m]) for m in DIMS}


def _diff(a, b):
    return jax.tree.map(lambda x, y: np.asarray(x) - np.asarray(y), a, b)


def _joint_gradient_fn(method, trainer):
    """Reference ``g = ∇ Σ_t w_t · mean(term_t)`` of the method's own terms (padding excluded), one run."""
    one = lambda tree: jax.tree.map(lambda v: v[0], tree)

    @jax.jit
    def grad(state, batch, hp):
        batch, hp = one(batch), one(hp)
        ctx = StepContext(jax.random.PRNGKey(0), hp, state.epoch[0], one(state.method_state), state.step[0],
                          trainer.modalities, trainer.task)

        def loss(params):
            terms = method.terms(nnx.merge(trainer.train_def, params, one(state.rest), copy=True), batch, ctx).losses
            weights = method.term_weights(ctx)
            return sum(weights[k] * jnp.average(v, weights=batch.meta["valid"]) for k, v in terms.items())

        return jax.tree.map(lambda g: g[None], jax.grad(loss)(one(state.params)))

    return lambda state, batch, hp: jax.tree.map(np.asarray, grad(state, batch, hp))


def test_applied_update_inside_the_trainer_and_gate_schedule():
    """ĝ − g = β d⊥ ⟂ g on the dominant encoder while the gate is open (epoch 0); ĝ = g once τ(1) shuts it.

    SGD with lr 1 makes the applied update readable (θ_after = θ − ĝ); the reference
    gradient g of the summed losses is taken directly from the method's terms.
    """
    method = get_method("redreg", num_epochs=2, tau_min=-1.0, tau_max=1.5)  # τ(0) = −1 open, τ(1) = 1.5 shut
    trainer = Trainer(method, DIMS, TASK, MODEL, SGD)
    hp = resolve_hparams(method, SGD, [{}])
    two = _two_batches()
    state = trainer.init([0], hp, jax.tree.map(lambda x: x[0], two[0]))
    joint_gradient, steps = _joint_gradient_fn(method, trainer), []
    for _ in range(2):
        for batch in two:
            before = jax.tree.map(np.array, state.params)
            g = joint_gradient(state, batch, hp)
            state, metrics = trainer.step(state, batch, hp)
            steps.append((before, g, _diff(_diff(before, state.params), g), metrics))
        state = state._replace(epoch=state.epoch + 1)
    for i in (0, 2):  # first step of an epoch: θ = θ_epoch_start, d = 0
        jax.tree.map(lambda d: np.testing.assert_allclose(d, 0.0, atol=1e-5), steps[i][2])

    theta0, (theta1, g, delta, metrics) = steps[0][0], steps[1]
    conf = {m: float(metrics[f"confidence/{m}"][0]) for m in DIMS}
    dom, other = sorted(DIMS, key=conf.get, reverse=True)
    beta = math.exp(0.9 * math.tanh(conf[dom] - conf[other]))
    # the gated strengths are logged per modality: β on the dominant one, 0 elsewhere and once the gate shuts
    np.testing.assert_allclose([metrics[f"beta/{dom}"][0], metrics[f"beta/{other}"][0]], [beta, 0.0], rtol=1e-5)
    np.testing.assert_allclose([steps[3][3][f"beta/{m}"][0] for m in DIMS], 0.0)
    drift = _diff(theta1, theta0)
    for g_j, delta_j, d_j in zip(*(_leaves_by_group(t)[dom] for t in (g, delta, drift))):
        g_j, delta_j, d_j = g_j[0], delta_j[0], d_j[0]
        d_perp = d_j - np.vdot(d_j, g_j) / (np.vdot(g_j, g_j) + 1e-12) * g_j
        assert np.linalg.norm(delta_j) > 1e-3
        assert abs(np.vdot(delta_j, g_j)) <= 1e-3 * np.linalg.norm(delta_j) * np.linalg.norm(g_j)
        np.testing.assert_allclose(delta_j, beta * d_perp, rtol=1e-3, atol=1e-5)
    for d in _leaves_by_group(delta)[other] + jax.tree.leaves(delta["fusion_head"]):
        np.testing.assert_allclose(d, 0.0, atol=1e-5)

    theta3, _, delta3, _ = steps[3]  # epoch 1, second step: drift ≠ 0 but the gate is shut
    assert max(np.abs(d).max() for d in jax.tree.leaves(_diff(theta3, steps[2][0]))) > 1e-3
    jax.tree.map(lambda d: np.testing.assert_allclose(d, 0.0, atol=1e-5), delta3)


def _setup(method, valid):
    model = make_model(method, DIMS, 3, MODEL, 0)
    batch = _two_batches()[0]
    batch = jax.tree.map(lambda x: jnp.asarray(x[0]), batch)
    batch = batch._replace(meta={**batch.meta, "valid": jnp.asarray(valid, jnp.float32)})
    state = method.init_state(model, batch)
    hp = {k: jnp.asarray(v) for k, v in method.hparams.items()}
    return model, batch, StepContext(jax.random.PRNGKey(1), hp, jnp.asarray(0), state, jnp.asarray(0),
                                     tuple(model.modalities), TASK)


def test_observations_and_monitor_first_step():
    method = get_method("redreg", gamma=0.6)
    valid = np.r_[np.ones(10), np.zeros(6)]  # the last six rows are padding
    model, batch, ctx = _setup(method, valid)
    terms = method.terms(model, batch, ctx)
    aux, signals = terms.logs, terms.signals
    out = model(batch.inputs)
    for m in DIMS:
        p = jax.nn.softmax(out.unimodal_logits[m])[np.arange(16), batch.label]
        np.testing.assert_allclose(aux[f"confidence/{m}"], np.mean(p[:10]), rtol=1e-5)
        np.testing.assert_allclose(signals["confidence"][m], np.mean(p[:10]), rtol=1e-5)
        # First step: EMA = 0.1·red, so r = red / (0.1 red) − γ·S with S = 1 while the window fills.
        np.testing.assert_allclose(aux[f"redundancy/{m}"], 10.0 - 0.6, rtol=1e-4)
        np.testing.assert_allclose(signals["redundancy"][m], 10.0 - 0.6, rtol=1e-4)
    sim = co_information_similarity([out.features[m][:10] for m in DIMS])
    np.testing.assert_allclose(aux["similarity"], sim, rtol=1e-5)
    np.testing.assert_allclose(signals["similarity"], sim, rtol=1e-5)
    assert int(terms.state["monitor"].length) == 1
    assert set(signals) == {"confidence", "redundancy", "similarity", "num_epochs"}


def test_modality_dropout_schedule_and_draw():
    np.testing.assert_allclose([drop_probability(e, 10) for e in (0, 1, 3, 9)],
                               [0.6, 0.6 - 0.5 / 3, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(drop_probability(5, 2), 0.1, rtol=1e-6)  # ⌊0.3·2⌋ = 0: no division by zero
    inputs = {"a": jnp.ones((2, 3)), "b": jnp.ones((2, 3))}
    for seed in range(12):
        key = jax.random.PRNGKey(seed)
        u = float(jax.random.uniform(key))
        out = drop_modalities(key, inputs, ("a", "b"), 0.6)
        dropped = [m for m in "ab" if not np.any(out[m])]
        assert dropped == (["a"] if u < 0.3 else ["b"] if u < 0.6 else []), (u, dropped)


@pytest.mark.parametrize("options, match", [
    ({"window": 0}, "window must be >= 1"),
    ({"num_epochs": -1}, "num_epochs >= 0"),
    ({"momentum": 1.0}, "0 <= momentum < 1"),
    ({"sigma": 0.0}, "sigma > 0"),
    ({"clip_views": "visual"}, "tuple of modality names"),
    ({"tau_min": 0.6}, "must not exceed `tau_max`"),
    ({"kappa": -1.0}, "`kappa` must be non-negative"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_method("redreg", **options)


def test_unknown_clip_modality_is_named():
    model, batch, ctx = _setup(get_method("redreg"), np.ones(16))
    with pytest.raises(ValueError, match="clip_views names modalities \\['visual'\\]"):
        get_method("redreg", clip_views=("visual",)).terms(model, batch, ctx)


def test_integer_inputs_get_rounded_views_in_their_dtype():
    x = jnp.full((64, 50), 100, jnp.uint8).at[0].set(255)
    v1, v2 = noisy_input_views(jax.random.PRNGKey(0), x, 0.03, False, 57.6)
    assert v1.dtype == jnp.uint8 and int(v1.max()) == 255  # clipped to the dtype's range
    diff = np.asarray(v1[1:], np.float32) - np.asarray(v2[1:], np.float32)
    np.testing.assert_allclose(diff.std(), np.sqrt(2 * (0.03 * 57.6) ** 2 + 2 / 12), rtol=0.05)  # + rounding
    f1, f2 = noisy_input_views(jax.random.PRNGKey(0), jnp.full((4, 3), 0.99), 0.5, True, 57.6)
    assert float(jnp.max(f1)) <= 1.0 and float(jnp.min(f2)) >= 0.0


def test_fit_trains_with_the_code_options():
    method = get_method("redreg", modal_drop=True, gamma=0.6, gate_inclusive=False, clip_views=("b",))
    r = fit(method, [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    losses = np.array([h["train/loss"] for h in r.history])
    assert r.trainer.traces == 1
    assert (losses[-1] < losses[0]).all()
    np.testing.assert_array_equal(r.state.method_state["num_epochs"], [3, 3])  # read by the epoch hook
    assert int(r.state.method_state["monitor"].epoch[0]) == 2


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    assert_traces(get_method("redreg", modal_drop=True), ["confidence/c", "redundancy/a", "similarity", "beta/c"],
                  ["confidence", "redundancy", "similarity", "num_epochs"])
