import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _tiny import MODEL, OPT, tiny_splits, train_cfg
from jaxmm.data.types import Batch
from jaxmm.losses import softmax_cross_entropy
from jaxmm.methods import StepContext, get_method
from jaxmm.methods.iibalance import gated_prediction
from jaxmm.models.multimodal import ModelOutput
from jaxmm.train.loop import fit

from ._helpers import make_model, run_hook

DIMS = {"a": 4, "b": 4}
HP = {"lam": jnp.asarray(1.0), "lam_uni": jnp.asarray(1.0)}


def _setup(method, num_outputs=3, batch_size=12, seed=0):
    model = make_model(method, DIMS, num_outputs, MODEL, seed)
    rng = np.random.default_rng(seed)
    batch = Batch({m: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32) for m, d in DIMS.items()},
                  jnp.asarray(rng.integers(0, max(num_outputs, 2), batch_size)), jnp.arange(batch_size),
                  {"valid": jnp.ones(batch_size)})
    return model, batch, method.init_state(model, batch)


def test_warmup_end_fixes_budgets_from_validation_information_and_sets_the_ramp():
    method = get_method("iibalance", warmup_epochs=2, ramp_fraction=0.5)
    model, batch, ms = _setup(method)
    params = nnx.state(model, nnx.Param)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    strong = 4.0 * np.eye(3)[labels] + rng.normal(size=(60, 3))     # informative
    weak = 0.5 * np.eye(3)[labels] + rng.normal(size=(60, 3))       # barely informative
    val = ModelOutput(None, {"a": jnp.asarray(weak), "b": jnp.asarray(strong)}, {})

    def hook(state, epoch):  # one run, given the splits the hook reads (the validation split at the warm-up's end)
        splits = method.epoch_end.reads(epoch, 10)
        assert splits == (("val",) if epoch == 1 else ())
        new = run_hook(method, params, state, epoch, 10, {s: labels for s in splits}, {s: val for s in splits})
        jax.tree.map(np.testing.assert_array_equal, new.params, params)  # the hook leaves the parameters alone
        return new.state

    state = hook(ms, 0)                                               # still warming up: uniform budgets
    np.testing.assert_allclose(state["budgets"], [0.5, 0.5])
    state = hook(state, 1)                                            # warm-up ends: budgets fixed
    p_y = np.bincount(labels, minlength=3) / 60
    h_y = -np.sum(p_y * np.log(p_y))
    info = [max(0.0, h_y - float(np.mean(softmax_cross_entropy(jnp.asarray(x), jnp.asarray(labels)))))
            for x in (weak, strong)]
    budgets = np.asarray(state["budgets"])
    np.testing.assert_allclose(budgets, np.asarray(info) / sum(info), rtol=1e-5)
    np.testing.assert_allclose(budgets.sum(), 1.0, rtol=1e-6)
    assert budgets[1] > budgets[0]
    # The evaluation pass gates with the budgets of the method state.
    out = model(batch.inputs)
    expected, _ = gated_prediction(model, out.unimodal_logits, jnp.asarray(budgets), 1.0)
    evaluated = method.forward(model, batch.inputs, StepContext(state=state, modalities=tuple(DIMS)))
    np.testing.assert_allclose(evaluated.logits, expected, rtol=1e-5, atol=1e-6)
    uniform, _ = gated_prediction(model, out.unimodal_logits, jnp.asarray([0.5, 0.5]), 1.0)
    assert not np.allclose(evaluated.logits, uniform, atol=1e-4)
    np.testing.assert_allclose(state["ramp"], 0.0)                    # λ ramps over 0.5 · 8 = 4 epochs
    state = hook(state, 3)
    np.testing.assert_allclose(state["ramp"], 0.5)
    np.testing.assert_allclose(state["budgets"], budgets)             # fixed afterwards


def test_alignment_is_gap_times_prototype_ce_and_vanishes_when_the_gap_is_closed():
    method = get_method("iibalance", budgets=(0.5, 0.5), warmup_epochs=0, momentum=0.9)
    model, batch, ms = _setup(method)
    out = model(batch.inputs)
    probs = {m: jax.nn.softmax(out.unimodal_logits[m])[jnp.arange(12), batch.label].mean() for m in DIMS}
    for old, closed in (((0.9, 0.1), False), ((0.1, 0.9), True)):
        state = {**ms, "potentials": jnp.asarray(old)}
        result = method.terms(model, batch, StepContext(jax.random.key(0), HP, jnp.asarray(0), state))
        terms, aux = result.losses, result.logs
        pi = 0.9 * np.asarray(old) + 0.1 * np.asarray([probs["a"], probs["b"]])
        np.testing.assert_allclose(result.state["potentials"], pi, rtol=1e-5)
        anchor = 0  # equal budgets: the first modality is the anchor
        gap = max(0.0, pi[anchor] - pi[1])
        np.testing.assert_allclose(aux["gap/b"], gap, rtol=1e-5, atol=1e-7)
        assert float(aux["gap/a"]) == 0.0
        if closed:
            assert gap == 0.0 and bool(jnp.all(terms["pra"] == 0.0))
        else:
            z = out.features["b"] / jnp.linalg.norm(out.features["b"], axis=-1, keepdims=True)
            protos = result.state["prototypes"][anchor]
            expected = gap * softmax_cross_entropy(z @ protos.T / 0.1, batch.label)
            np.testing.assert_allclose(terms["pra"], expected, rtol=1e-4)
            assert gap > 0.5


def test_gate_weights_sum_to_one_and_mix_the_unimodal_probabilities():
    for k in (3, 1):
        method = get_method("iibalance", budgets=(0.2, 0.8), warmup_epochs=0)
        model, batch, _ = _setup(method, num_outputs=k)
        uni = model(batch.inputs).unimodal_logits
        fused, weights = gated_prediction(model, uni, jnp.asarray([0.2, 0.8]), 1.0)
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
        if k == 3:
            mixture = sum(weights[:, j, None] * jax.nn.softmax(uni[m]) for j, m in enumerate(DIMS))
            np.testing.assert_allclose(jnp.exp(fused), mixture, rtol=1e-5)
        else:
            mixture = sum(weights[:, j] * jax.nn.sigmoid(uni[m][:, 0]) for j, m in enumerate(DIMS))
            np.testing.assert_allclose(jax.nn.sigmoid(fused[:, 0]), mixture, rtol=1e-5)
    # The budget prior: with equal uncertainty and evidence the weights are the budgets.
    same = {m: uni["a"] for m in DIMS}
    _, weights = gated_prediction(model, same, jnp.asarray([0.2, 0.8]), 1.0)
    np.testing.assert_allclose(weights, np.tile([0.2, 0.8], (12, 1)), rtol=1e-5)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="warmup_epochs must be 0"):
        get_method("iibalance", budgets=(0.3, 0.7))
    with pytest.raises(ValueError, match="warmup_epochs >= 1"):
        get_method("iibalance", warmup_epochs=0)
    with pytest.raises(ValueError, match="`budget_method` must be one of"):
        get_method("iibalance", budget_method="entropy")
    with pytest.raises(ValueError, match="budgets has 3 values"):
        _setup(get_method("iibalance", budgets=(0.2, 0.3, 0.5), warmup_epochs=0))


def test_fit_warms_up_fixes_budgets_and_trains_with_one_compilation():
    result = fit(get_method("iibalance", warmup_epochs=1), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=4))
    assert result.trainer.traces == 1
    budgets = np.asarray(result.state.method_state["budgets"])
    np.testing.assert_allclose(budgets.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(budgets, 0.5)  # estimated, not the warm-up's uniform prior
    assert min(t["acc"] for t in result.test) > 0.5  # 3 classes: chance 1/3
