"""Tests for jaxmm.models.resnet on small inputs so they stay fast on CPU.

Every forward pass feeds the trunk 4 images of 32x48 (non-square, to catch
height/width mix-ups), so the eagerly compiled operations are shared across tests.
"""
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.models.resnet import FEATURE_DIM, AudioEncoder, BasicBlock, ResNet18, VisualEncoder

TORCHVISION_RESNET18_TRUNK_PARAMS = 11_176_512  # torchvision resnet18, 3 input channels, fc removed
STEM_KERNEL_AREA = 7 * 7
STEM_WIDTH = 64
SPEC = (4, 32, 48)  # [B, F, T]
CLIP = (2, 3, 2, 32, 48)  # [B, C, T, H, W]


def _param_count(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _eval_copy(module):
    copy = nnx.clone(module)
    copy.eval()
    return copy


@pytest.fixture(scope="module")
def audio_encoder():
    return AudioEncoder(rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def visual_encoder():
    return VisualEncoder(rngs=nnx.Rngs(0))


def _random(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_parameter_counts_match_torchvision_trunk():
    visual = nnx.eval_shape(lambda: VisualEncoder(rngs=nnx.Rngs(0)))
    audio = nnx.eval_shape(lambda: AudioEncoder(rngs=nnx.Rngs(0)))
    assert _param_count(visual) == TORCHVISION_RESNET18_TRUNK_PARAMS
    # One input channel instead of three: the 7x7 stem loses 2 * 49 * 64 weights.
    assert _param_count(audio) == TORCHVISION_RESNET18_TRUNK_PARAMS - 2 * STEM_KERNEL_AREA * STEM_WIDTH == 11_170_240


def test_initialisation_kaiming_fan_out_and_unit_batchnorm(visual_encoder):
    kernel = np.asarray(visual_encoder.trunk.blocks[7].conv2.kernel[...])  # 3x3x512x512
    assert abs(kernel.std() / np.sqrt(2.0 / (9 * 512)) - 1) < 0.01
    bn = visual_encoder.trunk.blocks[0].bn1
    np.testing.assert_array_equal(bn.scale[...], 1.0)
    np.testing.assert_array_equal(bn.bias[...], 0.0)


def test_bn_scale_std_option():
    block = BasicBlock(256, 512, 2, dtype=None, bn_scale_std=0.02, rngs=nnx.Rngs(0))
    scale = np.concatenate([np.asarray(bn.scale[...]) for bn in (block.bn1, block.bn2, block.shortcut_bn)])
    assert abs(scale.mean() - 1) < 0.005 and 0.015 < scale.std() < 0.025


def test_audio_accepts_rank3_nchw_and_nhwc(audio_encoder):
    spec = _random(SPEC)
    encoder = _eval_copy(audio_encoder)
    out = encoder(spec)
    assert out.shape == (SPEC[0], FEATURE_DIM) and out.dtype == jnp.float32
    np.testing.assert_allclose(encoder(spec[:, None]), out, rtol=1e-6)
    encoder.layout = "NHWC"
    np.testing.assert_allclose(encoder(spec[..., None]), out, rtol=1e-6)


def test_visual_layouts_agree(visual_encoder):
    clip = _random(CLIP)
    encoder = _eval_copy(visual_encoder)
    out = encoder(clip)
    assert out.shape == (CLIP[0], FEATURE_DIM) and out.dtype == jnp.float32
    encoder.layout = "BTCHW"
    np.testing.assert_allclose(encoder(clip.transpose(0, 2, 1, 3, 4)), out, rtol=1e-5, atol=1e-6)
    encoder.layout = "BTHWC"
    np.testing.assert_allclose(encoder(clip.transpose(0, 2, 3, 4, 1)), out, rtol=1e-5, atol=1e-6)


def test_time_pooling_is_a_mean_over_frames(visual_encoder):
    encoder = _eval_copy(visual_encoder)
    clip = _random(CLIP, seed=1)
    batch, channels, frames, height, width = CLIP
    out = encoder(clip)
    np.testing.assert_allclose(encoder(clip[:, :, ::-1]), out, rtol=1e-5, atol=1e-6)
    # Each frame encoded on its own (as one-frame clips), then averaged.
    one_frame_clips = clip.transpose(0, 2, 1, 3, 4).reshape(batch * frames, channels, 1, height, width)
    per_frame = encoder(one_frame_clips).reshape(batch, frames, FEATURE_DIM)
    np.testing.assert_allclose(per_frame.mean(axis=1), out, rtol=1e-5, atol=1e-6)


def test_batchnorm_train_uses_batch_statistics_and_updates_running_averages(audio_encoder):
    encoder = nnx.clone(audio_encoder)
    encoder.train()
    spec = _random(SPEC)
    other = spec.at[1:].set(_random((SPEC[0] - 1, *SPEC[1:]), seed=5))
    out = encoder(spec)
    assert np.abs(np.asarray(encoder.trunk.bn.mean[...])).max() > 0  # running mean moved
    out_other = encoder(other)
    assert not np.allclose(out[0], out_other[0], atol=1e-4)  # example 0 depends on its batch mates


def test_batchnorm_eval_uses_running_averages_and_leaves_them(audio_encoder):
    encoder = _eval_copy(audio_encoder)
    stats = nnx.state(encoder, nnx.BatchStat)
    spec = _random(SPEC)
    other = spec.at[1:].set(_random((SPEC[0] - 1, *SPEC[1:]), seed=5))
    np.testing.assert_allclose(encoder(spec)[0], encoder(other)[0], rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(encoder, nnx.BatchStat), stats)


def test_bf16_compute_keeps_float32_params_and_output(audio_encoder):
    encoder = AudioEncoder(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # same seed as the fixture
    encoder.eval()
    assert {x.dtype for x in jax.tree.leaves(nnx.state(encoder))} == {jnp.dtype(jnp.float32)}
    spec = _random(SPEC)
    out = nnx.jit(lambda module, x: module(x))(encoder, spec)  # one compile instead of many eager bf16 ops
    assert out.dtype == jnp.float32
    expected = _eval_copy(audio_encoder)(spec)
    assert np.abs(out - expected).max() < 0.05 * np.abs(expected).max()


@pytest.mark.parametrize(
    "build, x, message",
    [
        (lambda: AudioEncoder(rngs=nnx.Rngs(0)), jnp.zeros((2, 32)), r"\[B, F, T\]"),
        (lambda: AudioEncoder(rngs=nnx.Rngs(0)), jnp.zeros((2, 3, 32, 32)), r"1 channel\(s\) in layout 'NCHW'"),
        (lambda: VisualEncoder(rngs=nnx.Rngs(0)), jnp.zeros((2, 3, 32, 32)), "rank-5"),
        (lambda: VisualEncoder(rngs=nnx.Rngs(0)), jnp.zeros((2, 2, 3, 32, 32)), r"3 channel\(s\) in layout 'BCTHW'"),
        (lambda: ResNet18(3, rngs=nnx.Rngs(0)), jnp.zeros((2, 3, 32, 32)), r"channels-last images \[N, H, W, 3\]"),
    ],
)
def test_bad_input_rank_or_channels(build, x, message):
    encoder = nnx.eval_shape(build)
    with pytest.raises(ValueError, match=message):
        encoder(x)


@pytest.mark.parametrize("build", [lambda: AudioEncoder(layout="NTFC", rngs=nnx.Rngs(0)),
                                   lambda: VisualEncoder(layout="BHWTC", rngs=nnx.Rngs(0))])
def test_unknown_layout_lists_valid_ones(build):
    with pytest.raises(ValueError, match="valid layouts"):
        build()


def _torch_reference():
    """Imports benchmarks/torch_reference.py by path (benchmarks/ is not a package)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "torch_reference.py"
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matches_pytorch_reference_in_train_mode(audio_encoder):
    torch = pytest.importorskip("torch")
    torch_trunk = _torch_reference().build_torch_av_model(6).audio_net.double()
    encoder = nnx.clone(audio_encoder)
    encoder.train()
    names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    torch_state = torch_trunk.state_dict()
    for path, value in nnx.to_flat_state(nnx.state(encoder.trunk)):
        key = ".".join(str(p) for p in path[:-1]) + "." + names[path[-1]]
        array = np.asarray(value[...])
        torch_state[key] = torch.tensor(array.transpose(3, 2, 0, 1) if array.ndim == 4 else array, dtype=torch.float64)
    torch_trunk.load_state_dict(torch_state)
    spec = np.random.default_rng(3).standard_normal((SPEC[0], 1, *SPEC[1:]))
    expected = torch_trunk(torch.from_numpy(spec)).detach().numpy().mean(axis=(2, 3))
    np.testing.assert_allclose(encoder(jnp.asarray(spec, jnp.float32)), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        encoder.trunk.bn.mean[...], torch_trunk.bn.running_mean.numpy(), rtol=1e-4, atol=1e-5
    )
