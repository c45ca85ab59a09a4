import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.data.types import Batch
from jaxmm.losses import bernoulli_kl_to_half
from jaxmm.methods import StepContext, get_method
from jaxmm.methods import _masking
from jaxmm.models.multimodal import MLPModelConfig

from ._helpers import make_model

DIMS = {"x0": 6, "x1": 6}


def _setup(method, batch_size=32, seed=0):
    model = make_model(method, DIMS, 1, MLPModelConfig(encoder_hidden=(8,), fusion_hidden=(8,)), seed)
    rng = np.random.default_rng(seed)
    mask = np.zeros((batch_size, 6), np.float32)
    mask[:, :2] = 1
    batch = Batch(inputs={m: jnp.asarray(rng.normal(size=(batch_size, 6)), jnp.float32) for m in DIMS},
                  label=jnp.asarray(rng.integers(0, 2, batch_size)), index=jnp.arange(batch_size),
                  meta={"mask/x0": mask, "mask/x1": mask, "valid": jnp.ones(batch_size)})
    state = method.init_state(model, batch)
    ctx = StepContext(jax.random.key(1), {k: jnp.asarray(v) for k, v in method.hparams.items()}, jnp.asarray(0), state,
                      jnp.asarray(0), tuple(model.modalities))
    return model, batch, ctx


def test_synib_kl_equals_explicit_counterfactual_passes():
    method = get_method("synib", mask="oracle")
    model, batch, ctx = _setup(method)
    terms = method.terms(model, batch, ctx).losses
    # Recompute by hand: corrupt coordinates 0..1 of one modality with the same N(0,1) draws.
    keys = jax.random.split(ctx.rng, 4)
    expected = 0.0
    for i, m in enumerate(DIMS):
        fill = jax.random.normal(keys[2 * i], batch.inputs[m].shape)
        x = dict(batch.inputs)
        x[m] = jnp.where(batch.meta[f"mask/{m}"] > 0, fill, x[m])
        expected = expected + bernoulli_kl_to_half(model(x).logits[:, 0])
    np.testing.assert_allclose(terms["synib_kl"], expected, rtol=1e-5, atol=1e-6)
    assert float(terms["synib_kl"].min()) >= 0


def test_random_mask_rate_reported_in_aux():
    method = get_method("synib", mask="random")
    model, batch, ctx = _setup(method, batch_size=512)
    ctx = dataclasses.replace(ctx, hparams={**ctx.hparams, "p": jnp.asarray(0.3)})
    aux = method.terms(model, batch, ctx).logs
    assert abs(float(aux["mask_rate/x0"]) - 0.3) < 0.02


def test_learned_mask_corrupts_the_complement_by_default():
    for target in ("complement", "important"):
        method = get_method("synib", mask="learned", learned_steps=5, learned_target=target)
        model, batch, ctx = _setup(method)
        aux = method.terms(model, batch, ctx).logs
        rate = float(aux["mask_rate/x0"])
        # The inner problem starts almost empty (logit -4): few coordinates are "important".
        assert rate > 0.5 if target == "complement" else rate < 0.5


def test_ema_fill_updates_statistics():
    method = get_method("synib", mask="random", fill="ema", ema_momentum=0.5)
    model, batch, ctx = _setup(method)
    stats = method.terms(model, batch, ctx).state["masking"]["stats"]["x0"]
    np.testing.assert_allclose(stats.mean, 0.5 * np.asarray(batch.inputs["x0"]).mean(0), rtol=1e-5, atol=1e-6)


def test_reference_variants_and_latent_level():
    for opts in ({"reference": "unimodal"}, {"reference": "unimodal", "anchor": "self"},
                 {"reference": "gaussian", "level": "latent", "fill": "shuffle"}):
        method = get_method("synib", mask="random", **opts)
        model, batch, ctx = _setup(method)
        terms = method.terms(model, batch, ctx).losses
        assert terms["synib_kl"].shape == (32,) and bool(jnp.all(terms["synib_kl"] >= -1e-6))
    assert "logvar_head" in make_model(get_method("synib", reference="gaussian"), DIMS, 1, MLPModelConfig(), 0).extras


def test_lambda_annealing():
    method = get_method("synib", anneal_epochs=20)
    ctx = StepContext(None, {"lam": 10.0, "lam_uni": 0.05}, jnp.asarray(4), {})
    assert float(method.term_weights(ctx)["synib_kl"]) == pytest.approx(2.5)


def test_masking_control_uses_ce_on_masked_copies():
    method = get_method("masking_control", mask="oracle")
    model, batch, ctx = _setup(method)
    terms = method.terms(model, batch, ctx).losses
    assert set(terms) == {"ce_union", "uni_ce"} and bool(jnp.all(terms["ce_union"] > 0))


def test_bad_options():
    with pytest.raises(ValueError, match="unknown mask"):
        get_method("synib", mask="diffusion")
    with pytest.raises(ValueError, match="unknown reference"):
        get_method("synib", reference="beta")
    with pytest.raises(ValueError, match="oracle masks"):
        _masking.MaskingConfig(mask="oracle", level="latent")
    method = get_method("synib", mask="oracle")
    model, batch, ctx = _setup(method)
    with pytest.raises(ValueError, match="mask/x0"):
        method.terms(model, batch._replace(meta={"valid": batch.meta["valid"]}), ctx)


def _loss_and_grads(method, model, batch, ctx):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        terms = method.terms(nnx.merge(graphdef, p, rest, copy=True), batch, ctx)
        weights = method.term_weights(ctx)
        return sum(weights[k] * jnp.mean(v) for k, v in terms.losses.items())

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("name, options", [
    ("synib", {"mask": "oracle"}), ("synib", {"mask": "random", "fill": "shuffle"}),
    ("synib", {"mask": "learned", "learned_steps": 3}), ("synib", {"mask": "random", "reference": "gaussian"}),
    ("synib", {"mask": "random", "reference": "unimodal"}), ("masking_control", {"mask": "random"})])
def test_reusing_clean_features_gives_the_reencoded_loss_and_gradients(name, options, monkeypatch):
    method = get_method(name, **options)
    model, batch, ctx = _setup(method)
    assert _masking.clean_features_reusable(model, _masking.masking_config(options["mask"], "noise", "input"))
    loss, grads = _loss_and_grads(method, model, batch, ctx)
    monkeypatch.setattr(_masking, "clean_features_reusable", lambda model, cfg: False)  # every pass re-encodes
    ref_loss, ref_grads = _loss_and_grads(method, model, batch, ctx)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, ref_grads)


def test_active_dropout_keeps_the_official_reencoding():
    method = get_method("synib", mask="random")
    cfg = _masking.masking_config("random", "noise", "input")
    model = make_model(method, DIMS, 1, MLPModelConfig(encoder_hidden=(8,), fusion_hidden=(8,), dropout=0.3))
    assert not _masking.clean_features_reusable(model, cfg)
    model.eval()  # deterministic dropout: reuse is exact again
    assert _masking.clean_features_reusable(model, cfg)
    latent = _masking.masking_config("random", "noise", "latent")
    assert not _masking.clean_features_reusable(make_model(method, DIMS, 1, MLPModelConfig()), latent)
