"""MCR: permutation divergences through the model, game coupling, contrastive term, end to end."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.losses.mcr import supervised_nt_xent
from jaxmm.data.types import Batch
from jaxmm.methods import StepContext, get_method
from jaxmm.models.multimodal import ModelConfig
from jaxmm.train.loop import fit

from _tiny import MODEL, OPT, tiny_splits, train_cfg

from ._helpers import jit_terms, make_model
from ._onestep import assert_traces, setup

DIMS = {"a": 4, "b": 4}


def _setup(method, ignore_b=False):
    model, batch, ctx = setup(method, DIMS, batch_size=8, cfg=MODEL)
    if ignore_b:  # the fused head reads the concatenation [z_a; z_b]: zero the rows of z_b
        kernel = model.fusion_head.layers[0].kernel
        kernel[...] = kernel[...].at[8:].set(0.0)
    return model, batch._replace(label=jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1])), ctx


def _jsd(p_logits, q_logits):
    p, q = jax.nn.softmax(p_logits), jax.nn.softmax(q_logits)
    m = (p + q) / 2
    return 0.5 * (jnp.sum(p * jnp.log(p / m), -1) + jnp.sum(q * jnp.log(q / m), -1))


def test_permuting_an_ignored_modality_costs_nothing():
    method = get_method("mcr", num_permutations=4)
    model, batch, ctx = _setup(method, ignore_b=True)
    out = jit_terms(method, model)(batch, ctx)
    terms, aux = out.losses, out.logs
    assert float(aux["mipd/D_b"]) == 0.0 and float(aux["mipd/D_a"]) > 1e-4
    np.testing.assert_allclose(jnp.mean(terms["mipd"]), -aux["mipd/D_a"], rtol=1e-5)
    # The contrastive term: supervised NT-Xent of the training-pass features.
    feats = model.encode(batch.inputs)
    expected = supervised_nt_xent([feats["a"], feats["b"]], batch.label, temperature=0.5)
    np.testing.assert_allclose(terms["con"], expected, rtol=1e-5)
    assert set(terms) == {"ce", "uni_ce", "mipd", "con"}


def test_two_example_batch_divergence_by_hand():
    """Two examples have two permutations: the identity (D_a = 0) and the swap, whose D_a is the
    mean JSD between the fused prediction with the two z_a swapped and the clean prediction."""
    method = get_method("mcr", num_permutations=1)
    model, batch, ctx = _setup(method, ignore_b=True)
    batch = jax.tree.map(lambda x: x[:2], batch)._replace(label=jnp.asarray([0, 1]))
    kernel = model.fusion_head.layers[0].kernel
    kernel[...] = 20.0 * kernel[...]  # spread the predictions: a well-conditioned JSD
    out = model(batch.inputs)
    swap = float(jnp.mean(_jsd(model.fuse({"a": out.features["a"][::-1], "b": out.features["b"]}), out.logits)))
    terms = jit_terms(method, model)
    seen = np.array([terms(batch, dataclasses.replace(ctx, rng=jax.random.key(s))).logs["mipd/D_a"]
                     for s in range(8)])
    is_swap = np.isclose(seen, swap, rtol=1e-4, atol=0)
    assert swap > 1e-3 and is_swap.any() and (np.abs(seen[~is_swap]) < 1e-9).all() and not is_swap.all()


def test_couplings_share_values_but_not_encoder_gradients():
    """Also: without dropout or batch norm, reusing the training pass (latents="train") changes nothing."""
    methods = [get_method("mcr", coupling=c, num_permutations=4, latents=z)
               for c, z in (("greedy", "eval"), ("independent", "eval"), ("greedy", "train"))]
    model, batch, ctx = _setup(methods[0])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def values_and_grads(p):
        mipd = lambda q, m: jnp.mean(m.terms(nnx.merge(graphdef, q, rest), batch, ctx).losses["mipd"])
        return [jax.value_and_grad(mipd)(p, m) for m in methods]

    (v_greedy, g_greedy), (v_indep, g_indep), (v_train, g_train) = values_and_grads(params)
    flat = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g["encoders"])])
    assert float(v_greedy) == pytest.approx(float(v_indep), rel=1e-6)
    assert not np.allclose(flat(g_greedy), flat(g_indep), atol=1e-6)
    assert float(v_train) == pytest.approx(float(v_greedy), rel=1e-6)
    np.testing.assert_allclose(flat(g_train), flat(g_greedy), rtol=1e-4, atol=1e-7)


def test_fit_trains_with_one_compilation():
    r = fit(get_method("mcr", num_permutations=4), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    assert r.trainer.traces == 1
    losses = np.array([h["train/term/ce"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert max(t["acc"] for t in r.test) > 0.5  # 3 classes: chance is 1/3
    assert all(np.all(np.asarray(h["train/mipd/D_a"]) > 0) for h in r.history)


def test_traces_on_the_audio_visual_model_and_three_modalities():
    assert_traces(get_method("mcr"), ["mipd/D_a", "mipd/D_b", "mipd/D_c", "term/con"])


def test_bad_options():
    with pytest.raises(ValueError, match="unknown coupling"):
        get_method("mcr", coupling="selfish")
    with pytest.raises(ValueError, match="unknown latents"):
        get_method("mcr", latents="test")
    with pytest.raises(ValueError, match="num_permutations"):
        get_method("mcr", num_permutations=0)
    # An MLP (width 4) and a ResNet (width 512) encoder: traced only.
    shapes, cfg = {"a": (3,), "b": (1, 16, 16)}, ModelConfig(encoders={"b": "audio"}, encoder_hidden=(4,))
    batch = Batch({m: jnp.zeros((4, *s)) for m, s in shapes.items()}, jnp.arange(4) % 3, jnp.arange(4),
                  {"valid": jnp.ones(4)})
    ctx = StepContext(jax.random.key(0), {"tau": 0.5}, 0, {})
    terms = lambda method: jax.eval_shape(lambda: method.terms(make_model(method, shapes, 3, cfg, 0),
                                                               batch, ctx)).losses
    with pytest.raises(ValueError, match="one width"):
        terms(get_method("mcr", num_permutations=2))
    assert "con" not in terms(get_method("mcr", num_permutations=2, contrastive=False))
