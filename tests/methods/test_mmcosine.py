"""MMCosine: scaled cosine logits on the unimodal heads' weights, end to end."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.data.types import Batch
from jaxmm.methods import StepContext, get_method
from jaxmm.train.loop import fit

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import jit_terms, make_model
from ._onestep import assert_traces

DIMS = {"a": 4, "b": 5}
CFG = dataclasses.replace(MODEL, encoder_hidden=(6,))


def _unit(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_logits_are_scaled_cosines_of_hand_set_features_and_weights():
    method = get_method("mmcosine")
    model = make_model(method, DIMS, 3, CFG, 0)
    rng = np.random.default_rng(0)
    kernels = {m: rng.normal(size=(6, 3)).astype(np.float32) for m in DIMS}
    for m in DIMS:  # hand-made class vectors; a bias that MMCosine must ignore
        model.unimodal_heads[m].layers[0].kernel[...] = jnp.asarray(kernels[m])
        model.unimodal_heads[m].layers[0].bias[...] = jnp.full((3,), 7.0)
    inputs = {m: jnp.asarray(rng.normal(size=(5, d)), jnp.float32) for m, d in DIMS.items()}
    features = {m: np.asarray(z) for m, z in model.encode(inputs).items()}
    ctx = StepContext(jax.random.key(0), {"scale": jnp.asarray(15.0)}, jnp.asarray(0), {})
    out = method.forward(model, inputs, ctx)  # evaluation uses eval_scale (10), not the trained scale
    expected = {m: 10.0 * _unit(features[m], 1) @ _unit(kernels[m], 0) for m in DIMS}
    for m in DIMS:
        np.testing.assert_allclose(out.unimodal_logits[m], expected[m], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.logits, expected["a"] + expected["b"], rtol=1e-5, atol=1e-5)
    batch = Batch(inputs, jnp.asarray([0, 1, 2, 0, 1]), jnp.arange(5), {"valid": jnp.ones(5)})
    terms = jit_terms(method, model)(batch, ctx).losses
    logits = 1.5 * (expected["a"] + expected["b"])
    ce = -jax.nn.log_softmax(logits)[np.arange(5), np.asarray(batch.label)]
    np.testing.assert_allclose(terms["ce"], ce, rtol=1e-5, atol=1e-5)


def test_fit_trains_with_one_compilation():
    r = fit(get_method("mmcosine"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all() and r.trainer.traces == 1
    assert min(t["acc"] for t in r.test) > 0.5  # 3 classes: chance is 1/3
    assert {"acc/a", "acc/b"} <= set(r.test[0])


def test_traces_on_the_audio_visual_model_and_three_modalities():
    assert_traces(get_method("mmcosine"), ["term/ce"])


def test_bad_options_and_nonlinear_heads():
    with pytest.raises(ValueError, match="eval_scale"):
        get_method("mmcosine", eval_scale=0.0)
    method = get_method("mmcosine")
    model = make_model(method, DIMS, 3, dataclasses.replace(CFG, unimodal_hidden=(4,)), 0)
    with pytest.raises(ValueError, match="unimodal_hidden"):
        method.forward(model, {m: jnp.ones((2, d)) for m, d in DIMS.items()}, StepContext())
