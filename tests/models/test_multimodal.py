"""Tests for jaxmm.models.multimodal: encoder kinds, fusion choices, precision, groups, errors.

ResNet-18 programs are slow to compile on a CPU, so audio-visual models are
checked with ``nnx.eval_shape`` / ``jax.eval_shape`` (tracing only) except for one
tiny ``fit`` epoch; numerical checks use MLP encoders.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmm.data.types import ArrayDataset, DatasetSplits
from jaxmm.methods import get_method
from jaxmm.models.multimodal import ModelConfig, MultimodalClassifier
from jaxmm.models.resnet import FEATURE_DIM
from jaxmm.train.batching import stack_runs
from jaxmm.train.config import TrainConfig
from jaxmm.train.loop import fit
from jaxmm.train.protocols import protocol
from jaxmm.models.groups import param_labels
from jaxmm.train.state import build_model, model_factory

AV = ModelConfig(encoders={"audio": "audio", "visual": "visual"}, fusion_hidden=(), init="xavier")
AV_SHAPES = {"audio": (1, 32, 24), "visual": (3, 2, 32, 32)}  # [1, F, T] and [C, T, H, W]
BATCH = 4


_BUILT = {}


def _abstract(shapes, cfg, num_outputs=6, **kw):
    """The model's graph definition, params and rest, as shapes only (nothing compiled; cached per config)."""
    key = repr((shapes, cfg, num_outputs, kw))
    if key not in _BUILT:
        model = nnx.eval_shape(lambda: MultimodalClassifier(shapes, num_outputs, cfg, rngs=nnx.Rngs(0), **kw))
        _BUILT[key] = nnx.split(model, nnx.Param, ...)
    return _BUILT[key]


def _inputs(shapes, dtypes=None):
    dtypes = dtypes or {}
    return {m: jax.ShapeDtypeStruct((BATCH, *s), dtypes.get(m, jnp.float32)) for m, s in shapes.items()}


def _trace(shapes, cfg, inputs, fn=lambda model, x: model(x), **kw):
    graphdef, params, rest = _abstract(shapes, cfg, **kw)
    return jax.eval_shape(lambda p, r, x: fn(nnx.merge(graphdef, p, r), x), params, rest, inputs)


@pytest.mark.parametrize("fusion", ["concat", "gated"])  # sum and film: numerical MLP tests below
def test_audio_visual_model_shapes(fusion):
    cfg = dataclasses.replace(AV, fusion=fusion)
    out = _trace(AV_SHAPES, cfg, _inputs(AV_SHAPES))
    assert out.logits.shape == (BATCH, 6) and out.logits.dtype == jnp.float32
    assert {m: f.shape for m, f in out.features.items()} == {m: (BATCH, FEATURE_DIM) for m in AV_SHAPES}
    assert {m: u.shape for m, u in out.unimodal_logits.items()} == {m: (BATCH, 6) for m in AV_SHAPES}


def test_layouts_are_inferred_from_the_example_shape():
    channels_last = {"audio": (32, 24, 1), "visual": (2, 32, 32, 3)}  # what the readers store
    graphdef, params, rest = _abstract(channels_last, AV)
    model = nnx.merge(graphdef, params, rest)
    assert (model.encoders["audio"].layout, model.encoders["visual"].layout) == ("NHWC", "BTHWC")
    model = nnx.merge(*_abstract(AV_SHAPES, AV))
    assert (model.encoders["audio"].layout, model.encoders["visual"].layout) == ("NCHW", "BCTHW")
    out = _trace(channels_last, AV, _inputs(channels_last, {"visual": jnp.uint8}))
    assert out.logits.shape == (BATCH, 6)


def test_bfloat16_computes_the_encoders_in_bf16_with_float32_params_and_outputs():
    cfg = dataclasses.replace(AV, dtype="bfloat16")
    shapes = {**AV_SHAPES, "text": (5,)}
    _, params, _ = _abstract(shapes, cfg)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    inputs = _inputs(shapes)

    def activations(model, x):
        trunk = model.encoders["audio"].trunk(jnp.moveaxis(x["audio"], 1, -1))
        return trunk, model.encoders["text"].layers[0](x["text"]), model(x)

    trunk, hidden, out = _trace(shapes, cfg, inputs, activations)
    assert trunk.dtype == jnp.bfloat16 and hidden.dtype == jnp.bfloat16
    assert {f.dtype for f in out.features.values()} == {jnp.dtype(jnp.float32)}
    assert out.logits.dtype == jnp.float32


def test_param_groups_and_partitioned_transform_touch_only_their_group():
    for shapes in (AV_SHAPES, {**AV_SHAPES, "text": (5,)}):
        _, params, rest = _abstract(shapes, AV)
        labels = param_labels(params)
        assert set(jax.tree.leaves(labels)) == {*shapes, "head", "fusion"}
        # batch statistics are not parameters: they live in rest
        assert not any("batch_stats" in str(p) or "mean" in str(p[-1]) for p, _ in
                       jax.tree_util.tree_leaves_with_path(params))
        tx = optax.partition({g: optax.set_to_zero() if g == "audio" else optax.identity()
                              for g in set(jax.tree.leaves(labels))}, param_labels)

        @jax.jit
        def update_extremes():  # per-leaf (min, max) of the update of an all-ones gradient
            ones = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
            updates, _ = tx.update(ones, tx.init(ones), ones)
            return jax.tree.map(lambda u: jnp.stack([u.min(), u.max()]), updates)

        for (path, u), group in zip(jax.tree_util.tree_leaves_with_path(update_extremes()), jax.tree.leaves(labels)):
            np.testing.assert_array_equal(u, [0.0, 0.0] if group == "audio" else [1.0, 1.0], err_msg=str(path))
        audio = sum(x.size for x, g in zip(jax.tree.leaves(params), jax.tree.leaves(labels)) if g == "audio")
        assert audio == 11_170_240  # ResNet-18 trunk with a 1-channel stem: only the audio encoder


def test_default_config_keeps_the_mlp_model():
    graphdef, params, _ = _abstract({"a": 4, "b": (2, 3)}, ModelConfig(encoder_hidden=(8,), fusion_hidden=(8,)), 3)
    shapes = jax.tree.map(lambda s: s.shape, nnx.to_pure_dict(params))
    assert shapes["encoders"]["b"]["layers"][0]["kernel"] == (6, 8)  # [2, 3] inputs are flattened
    assert shapes["fusion_head"]["layers"][0]["kernel"] == (16, 8)
    assert shapes["unimodal_heads"]["a"]["layers"][0]["kernel"] == (8, 3)
    assert "fusion" not in shapes  # concatenation has no parameters


def test_sum_fusion_adds_per_modality_linear_maps_to_the_logits():
    cfg = ModelConfig(fusion="sum", fusion_hidden=(), encoder_hidden=(3,))
    model = MultimodalClassifier({"a": 2, "b": 2}, 4, cfg, rngs=nnx.Rngs(0))
    features = {"a": jnp.array([[1.0, 2.0, 3.0]]), "b": jnp.array([[0.5, -1.0, 2.0]])}
    logits, trunk = model.fuse(features, return_trunk=True)
    proj = model.fusion.projections
    expected = sum(features[m] @ proj[m].kernel[...] + proj[m].bias[...] for m in ("a", "b"))
    np.testing.assert_allclose(logits, expected, rtol=1e-6)
    np.testing.assert_allclose(trunk, jnp.concatenate([features["a"], features["b"]], -1))
    stacked = jnp.concatenate([proj["a"].kernel[...], proj["b"].kernel[...]], 0)
    np.testing.assert_allclose(trunk @ stacked + proj["a"].bias[...] + proj["b"].bias[...], logits, rtol=1e-6)


def test_film_head_and_trunk_width():
    cfg = ModelConfig(fusion="film", fusion_hidden=(7,), encoder_hidden=(3,), fusion_condition="b")
    model = MultimodalClassifier({"a": 2, "b": 2}, 4, cfg, rngs=nnx.Rngs(0))
    features = {"a": jnp.ones((2, 3)), "b": jnp.arange(6.0).reshape(2, 3)}
    gamma, beta = jnp.split(model.fusion.film(features["b"]), 2, axis=-1)
    logits, trunk = model.fuse(features, return_trunk=True)
    np.testing.assert_allclose(logits, model.fusion_head(gamma * features["a"] + beta), rtol=1e-6)
    assert trunk.shape == (2, 7) and model.trunk_width == 7 and model.feature_widths == {"a": 3, "b": 3}


def test_fusion_options_reach_the_fusion_module():
    cfg = ModelConfig(fusion="film", encoder_hidden=(3,), fusion_options={"condition": "b"})
    model = nnx.merge(*_abstract({"a": 2, "b": 2}, cfg))
    assert (model.fusion.condition, model.fusion.conditioned) == ("b", "a")


@pytest.mark.parametrize("change, match", [
    ({"encoders": {"audio": "rnn"}}, "encoder kind"),
    ({"encoders": {"a": "lstm"}, "encoder_options": {"a": {"hiden": 4}}}, r"encoder_options\['a'\].*'hiden'"),
    ({"projection": -1}, "projection"),
    ({"fusion_options": ["experts"]}, "fusion_options"),
    ({"fusion": "attention"}, "fusion"),
    ({"dtype": "float16"}, "dtype"),
    ({"init": "he"}, "init"),
    ({"fusion": "sum", "fusion_hidden": (8,)}, "fusion_hidden"),
])
def test_bad_config_values_are_rejected(change, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**change)


@pytest.mark.parametrize("shapes, match", [
    ({"audio": (5,), "visual": (3, 2, 32, 32)}, "spectrogram"),
    ({"audio": (2, 32, 24), "visual": (3, 2, 32, 32)}, "spectrogram"),
    ({"audio": (1, 32, 24), "visual": (3, 32, 32)}, "clip of frames"),
    ({"audio": (1, 32, 24), "visual": (2, 4, 32, 32)}, "clip of frames"),
])
def test_wrong_input_rank_is_rejected_at_build_time(shapes, match):
    with pytest.raises(ValueError, match=match):
        _abstract(shapes, AV)


def test_wrong_batch_rank_is_rejected_at_call_time():
    with pytest.raises(ValueError, match="rank-5"):
        _trace(AV_SHAPES, AV, {"audio": jax.ShapeDtypeStruct((BATCH, 1, 32, 24), jnp.float32),
                               "visual": jax.ShapeDtypeStruct((BATCH, 3, 32, 32), jnp.float32)})


def test_three_modalities_with_a_two_modality_fusion_and_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="exactly two"):
        _abstract({"a": 2, "b": 2, "c": 2}, ModelConfig(fusion="gated"))
    cfg = ModelConfig(encoders={"audoi": "audio"})
    with pytest.raises(ValueError, match="audoi"):
        nnx.eval_shape(lambda: build_model(get_method("vanilla"), model_factory(get_method("vanilla"), cfg,
                                                                                {"audio": (1, 8, 8)}, 3),
                                           3, nnx.Rngs(0)))


def _random_av_splits(n=(8, 4, 4), classes=3):
    rng = np.random.default_rng(0)

    def split(size, name):
        inputs = {"audio": rng.standard_normal((size, 32, 24, 1)).astype(np.float32),
                  "visual": rng.integers(0, 256, (size, 2, 32, 32, 3), dtype=np.uint8)}
        return ArrayDataset(inputs, rng.integers(0, classes, size), classes, name=name)

    return DatasetSplits(split(n[0], "train"), split(n[1], "val"), split(n[2], "test"))


@pytest.mark.usefixtures("unoptimised_compile")  # the ResNet programs' compilation is what this costs
def test_fit_one_epoch_of_the_audio_visual_protocol_updates_batch_stats_and_evaluates_with_them():
    p = protocol("crema_d")
    splits = _random_av_splits()
    train = TrainConfig(epochs=1, batch_size=BATCH, eval_batch_size=BATCH, progress=False, checkpoint_every=0)
    result = fit(get_method("vanilla"), [splits], [0], p.model, p.optimizer, train)
    assert np.isfinite(result.history[0]["train/loss"]).all() and 0.0 <= result.test[0]["acc"] <= 1.0
    rest = nnx.to_pure_dict(result.state.rest)
    bn = rest["encoders"]["audio"]["trunk"]["bn"]
    assert np.abs(np.asarray(bn["mean"])).max() > 0 and not np.allclose(bn["var"], 1.0)  # two train steps moved them
    # eval mode reads the running averages: an example's prediction does not depend on its batch mates
    data = result.trainer.predict
    full = stack_runs([splits.train])
    perm = np.array([0, 4, 1, 5, 2, 6, 3, 7])  # mixes the two evaluation chunks of 4
    shuffled = full._replace(inputs={k: v[:, perm] for k, v in full.inputs.items()}, label=full.label[:, perm])
    pred, _ = data(result.state, full, BATCH)
    pred_perm, _ = data(result.state, shuffled, BATCH)
    np.testing.assert_allclose(pred_perm[0], pred[0][perm], rtol=2e-5, atol=2e-5)
