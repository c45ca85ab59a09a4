"""Tests for jaxmm.models.fusion: shapes, numpy references, order, errors, factory.

Numerical tests share feature width ``WIDTH`` so eagerly compiled operations are
reused; differing widths are checked with ``nnx.eval_shape`` (no compilation).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.models.fusion import (
    FUSIONS,
    ConcatFusion,
    FiLMFusion,
    GatedFusion,
    MoEFusion,
    SumFusion,
    make_fusion,
)

BATCH = 3
WIDTH = 4


def _features(widths, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((BATCH, width)).astype(np.float32) for name, width in widths.items()}


def _randomise(module, seed=1):
    """Gives every parameter (biases too, which start at zero) random values; returns the module."""
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(v.shape), v.dtype), state))
    return module


def _affine(linear, x):
    return x @ np.asarray(linear.kernel[...]) + np.asarray(linear.bias[...])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_concat_follows_in_features_order_not_call_order():
    widths = {"visual": 3, "audio": 2, "text": 4}
    fusion = ConcatFusion(widths)
    feats = _features(widths)
    shuffled = {name: jnp.asarray(feats[name]) for name in ("audio", "text", "visual")}
    out = fusion(shuffled)
    assert fusion.out_features == 9 and out.shape == (BATCH, 9)
    np.testing.assert_array_equal(out, np.concatenate([feats["visual"], feats["audio"], feats["text"]], axis=1))
    assert not jax.tree.leaves(nnx.state(fusion, nnx.Param))


def test_sum_matches_numpy_for_three_modalities():
    widths = {"audio": WIDTH, "visual": WIDTH, "text": WIDTH}
    fusion = _randomise(SumFusion(widths, rngs=nnx.Rngs(0)))
    feats = _features(widths)
    expected = sum(_affine(fusion.projections[name], feats[name]) for name in widths)
    np.testing.assert_allclose(fusion(feats), expected, rtol=1e-5, atol=1e-5)
    assert fusion.out_features == WIDTH


@pytest.mark.parametrize("condition, conditioned", [(None, "visual"), ("audio", "visual"), ("visual", "audio")])
def test_film_matches_numpy(condition, conditioned):
    widths = {"audio": WIDTH, "visual": WIDTH}
    fusion = _randomise(FiLMFusion(widths, rngs=nnx.Rngs(0), condition=condition))
    feats = _features(widths)
    cond = "audio" if conditioned == "visual" else "visual"
    gamma_beta = _affine(fusion.film, feats[cond])
    expected = gamma_beta[:, :WIDTH] * feats[conditioned] + gamma_beta[:, WIDTH:]
    np.testing.assert_allclose(fusion(feats), expected, rtol=1e-5, atol=1e-5)
    assert fusion.out_features == WIDTH


@pytest.mark.parametrize("condition", [None, "visual"])
def test_gated_matches_numpy(condition):
    widths = {"audio": WIDTH, "visual": WIDTH}
    fusion = _randomise(GatedFusion(widths, rngs=nnx.Rngs(0), condition=condition))
    feats = _features(widths)
    gate_name, value_name = ("visual", "audio") if condition == "visual" else ("audio", "visual")
    expected = _sigmoid(_affine(fusion.projections[gate_name], feats[gate_name])) * _affine(
        fusion.projections[value_name], feats[value_name]
    )
    np.testing.assert_allclose(fusion(feats), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, out_features, expected_width, parameter_shapes",
    [
        ("concat", None, 8, []),
        ("sum", 6, 6, [(3, 6), (5, 6)]),
        ("film", None, 5, [(3, 10)]),  # audio (3) scales and shifts visual (5)
        ("gated", 6, 6, [(3, 6), (5, 6)]),
    ],
)
def test_shapes_with_different_input_widths(name, out_features, expected_width, parameter_shapes):
    widths = {"audio": 3, "visual": 5}

    def build_and_call():
        fusion = make_fusion(name, widths, out_features, nnx.Rngs(0))
        return fusion, fusion(_features(widths))

    fusion, out = nnx.eval_shape(build_and_call)
    assert fusion.out_features == expected_width and out.shape == (BATCH, expected_width)
    kernels = [leaf.shape for leaf in jax.tree.leaves(nnx.state(fusion, nnx.Param)) if leaf.ndim == 2]
    assert sorted(kernels) == parameter_shapes


def test_linear_init_is_xavier_normal_with_zero_bias():
    fusion = SumFusion({"audio": 512, "visual": 512}, 1024, rngs=nnx.Rngs(0))
    kernel = np.asarray(fusion.projections["audio"].kernel[...])
    assert abs(kernel.std() - np.sqrt(2.0 / (512 + 1024))) < 1e-3
    assert np.abs(kernel).max() > 3 * kernel.std()  # untruncated normal
    np.testing.assert_array_equal(fusion.projections["audio"].bias[...], 0.0)


@pytest.mark.parametrize("name", sorted(set(FUSIONS) - {"moe"}))  # moe: tests/models/test_moe.py
def test_split_merge_under_jit_matches_eager(name):
    widths = {"visual": WIDTH, "audio": WIDTH}
    fusion = _randomise(make_fusion(name, widths, None, nnx.Rngs(0)))
    feats = _features(widths)
    graphdef, state = nnx.split(fusion)
    jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    np.testing.assert_allclose(jitted(state, feats), fusion(feats), rtol=1e-6)
    assert fusion(feats).shape == (BATCH, fusion.out_features)


def test_make_fusion_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"'attention'.*\['concat', 'film', 'gated', 'moe', 'sum'\]"):
        make_fusion("attention", {"audio": 2, "visual": 2}, None, nnx.Rngs(0))


def test_make_fusion_builds_the_moe_cross_encoder_with_its_options():
    fusion = nnx.eval_shape(lambda: make_fusion("moe", {"text": 8, "audio": 8, "video": 8}, None, nnx.Rngs(0),
                                                num_layers=3, num_experts=6, top_k=3, expert_hidden=5))
    assert isinstance(fusion, MoEFusion) and fusion.out_features == 24 and len(fusion.layers) == 3
    moe = fusion.layers[0].moe
    assert moe.top_k == 3 and moe.w1.shape == (6, 8, 5) and moe.w2.shape == (6, 5, 24)
    assert moe.centers.shape == (3, 6, 8)  # one router per modality over the shared experts
    default = nnx.eval_shape(lambda: make_fusion("moe", {"a": 128, "b": 128}, None, nnx.Rngs(0)))
    assert len(default.layers) == 2 and default.layers[0].moe.w1.shape == (16, 128, 768)
    assert default.layers[0].moe.top_k == 2 and default.layers[0].moe.noisy_gating


def test_make_fusion_needs_rngs_for_parameters():
    assert isinstance(make_fusion("concat", {"audio": 2}), ConcatFusion)
    with pytest.raises(ValueError, match="rngs"):
        make_fusion("sum", {"audio": 2, "visual": 2}, 3)


def test_call_with_wrong_modalities_names_them():
    fusion = SumFusion({"audio": 2, "visual": 2}, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\['audio', 'visual'\].*\['audio', 'text'\]"):
        fusion(_features({"audio": 2, "text": 2}))


@pytest.mark.parametrize("shape", [(BATCH, 3), (BATCH, 1, 2), (2,)])
def test_call_with_wrong_shape(shape):
    fusion = ConcatFusion({"audio": 2, "visual": 2})
    with pytest.raises(ValueError, match=r"features\['audio'\] must have shape \[B, 2\]"):
        fusion({"audio": jnp.zeros(shape), "visual": jnp.zeros((BATCH, 2))})


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ConcatFusion({}), "empty"),
        (lambda: ConcatFusion({"audio": 0}), "positive int"),
        (lambda: ConcatFusion({"audio": 2, "visual": 3}, 4), "None or 5"),
        (lambda: SumFusion({"audio": 2, "visual": 3}, rngs=nnx.Rngs(0)), "pass out_features"),
        (lambda: SumFusion({"audio": 2}, -1, rngs=nnx.Rngs(0)), "positive int"),
        (lambda: FiLMFusion({"a": 2, "b": 2, "c": 2}, rngs=nnx.Rngs(0)), "exactly two"),
        (lambda: FiLMFusion({"audio": 2, "visual": 3}, 2, rngs=nnx.Rngs(0)), "None or 3"),
        (lambda: GatedFusion({"audio": 2, "visual": 2}, rngs=nnx.Rngs(0), condition="text"), "condition 'text'"),
        (lambda: MoEFusion({"audio": 2, "visual": 3}, rngs=nnx.Rngs(0)), "ModelConfig.projection"),
        (lambda: MoEFusion({"audio": 2, "visual": 2}, 3, rngs=nnx.Rngs(0)), "None or 4"),
        (lambda: MoEFusion({"audio": 2}, rngs=nnx.Rngs(0), num_layers=0), "num_layers"),
        (lambda: MoEFusion({"audio": 2}, rngs=nnx.Rngs(0), num_experts=2, top_k=3), "top_k=3 exceeds"),
        (lambda: MoEFusion({"audio": 2}, rngs=nnx.Rngs(0), expert_dropout=1.0), "dropout"),
    ],
)
def test_bad_construction_raises(build, message):
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(build)  # abstract: the MoE's checks need no compiled initialisation
