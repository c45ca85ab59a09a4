"""ResNet-18 audio and visual encoders of the GeWu-Lab audio-visual protocol.

Both encoders are a from-scratch ResNet-18 trunk (BasicBlock layout [2, 2, 2, 2],
widths 64-128-256-512, 7x7/2 stem + 3x3/2 max-pool, no classifier) followed by a
global average pool to a 512-d feature vector:

* :class:`AudioEncoder` reads a log-spectrogram ``[B, F, T]`` or ``[B, 1, F, T]``
  (one input channel) and pools over frequency and time;
* :class:`VisualEncoder` reads a clip of ``T`` frames, folds the frames into the
  batch, runs the 2-D trunk and pools over (time, height, width) jointly. Integer
  (``uint8``) frames, as the readers store them, are ImageNet-normalised on the
  device first (the protocol's eval transform).

Inputs arrive in the protocol's channels-first layout and are transposed once to
NHWC, the layout XLA convolutions want. Initialisation follows the official
``weight_init``: convolutions Kaiming-normal (fan_out, ReLU gain), BatchNorm
scale 1 and bias 0. BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. flax
``momentum=0.9``, epsilon 1e-5); switch between batch statistics and running
averages with ``model.train()`` / ``model.eval()`` (or ``nnx.view(model,
use_running_average=...)``). One difference to PyTorch remains: flax tracks the
biased batch variance in ``var`` where PyTorch tracks the unbiased one.

Mixed precision: ``dtype=jnp.bfloat16`` computes convolutions and BatchNorm in
bf16 while parameters stay float32; the pooled features are returned in float32.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.data.readers.frames import IMAGENET_MEAN, IMAGENET_STD

FEATURE_DIM = 512
"""Width of the pooled feature vector of both encoders."""

_STAGE_WIDTHS = (64, 128, 256, 512)
_BLOCKS_PER_STAGE = 2
_BN_MOMENTUM = 0.9  # flax convention; PyTorch's momentum=0.1.
_BN_EPSILON = 1e-5

# Kaiming normal, mode fan_out, ReLU gain: std = sqrt(2 / (out_channels * kh * kw)),
# an untruncated normal as in torch.nn.init.kaiming_normal_.
conv_kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

# Layout name -> permutation to channels-last.
_AUDIO_LAYOUTS = {"NCHW": (0, 2, 3, 1), "NHWC": (0, 1, 2, 3)}
_VISUAL_LAYOUTS = {
    "BCTHW": (0, 2, 3, 4, 1),
    "BTCHW": (0, 1, 3, 4, 2),
    "BTHWC": (0, 1, 2, 3, 4),
}


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    """A bias-free convolution padded like PyTorch (``kernel // 2`` on each side)."""
    pad = kernel // 2
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        dtype=dtype,
        kernel_init=conv_kernel_init,
        rngs=rngs,
    )


def _normal_around_one(std: float):
    """Initializer drawing from N(1, std^2)."""

    def init(key, shape, dtype=jnp.float32):
        return 1.0 + std * jax.random.normal(key, shape, dtype)

    return init


def _batch_norm(features: int, dtype, scale_std: float, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with PyTorch's momentum/epsilon and scale ~ N(1, scale_std^2) (1 when 0), bias 0."""
    return nnx.BatchNorm(
        features,
        momentum=_BN_MOMENTUM,
        epsilon=_BN_EPSILON,
        dtype=dtype,
        scale_init=_normal_around_one(scale_std) if scale_std else nnx.initializers.ones,
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection.

    The shortcut is a 1x1 convolution + BatchNorm when the block changes the
    width or the resolution, the identity otherwise.

    Args:
      in_ch: input channels.
      out_ch: output channels.
      stride: stride of the first convolution (and of the shortcut).
      dtype: computation dtype (``None``: that of the inputs and parameters).
      bn_scale_std: standard deviation of the BatchNorm scale initialisation.
      rngs: random streams for initialisation.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, dtype, bn_scale_std: float, rngs: nnx.Rngs):
        self.conv1 = _conv(in_ch, out_ch, 3, stride, dtype, rngs)
        self.bn1 = _batch_norm(out_ch, dtype, bn_scale_std, rngs)
        self.conv2 = _conv(out_ch, out_ch, 3, 1, dtype, rngs)
        self.bn2 = _batch_norm(out_ch, dtype, bn_scale_std, rngs)
        if stride != 1 or in_ch != out_ch:
            self.shortcut_conv = _conv(in_ch, out_ch, 1, stride, dtype, rngs)
            self.shortcut_bn = _batch_norm(out_ch, dtype, bn_scale_std, rngs)
        else:
            self.shortcut_conv = None
            self.shortcut_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[N, H, W, in_ch]`` to ``[N, H / stride, W / stride, out_ch]``."""
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
        return nnx.relu(y + shortcut)


class ResNet18(nnx.Module):
    """ResNet-18 trunk without pooling or classifier, channels-last.

    Args:
      in_channels: channels of the input image (1 for spectrograms, 3 for RGB).
      dtype: computation dtype, e.g. ``jnp.bfloat16``; parameters stay float32.
      bn_scale_std: BatchNorm scale is initialised from N(1, bn_scale_std^2).
        0 (default) gives the official ``weight_init`` (scale 1) used by OGM-GE,
        AGM, PMR and InfoReg; 0.02 gives the backbone's own init that MMPareto and
        Diagnosing & Re-learning keep.
      rngs: random streams for initialisation (``params`` stream).
    """

    def __init__(self, in_channels: int, *, dtype=None, bn_scale_std: float = 0.0, rngs: nnx.Rngs):
        self.in_channels = in_channels
        self.conv = _conv(in_channels, _STAGE_WIDTHS[0], 7, 2, dtype, rngs)
        self.bn = _batch_norm(_STAGE_WIDTHS[0], dtype, bn_scale_std, rngs)
        blocks = []
        width = _STAGE_WIDTHS[0]
        for stage, out_width in enumerate(_STAGE_WIDTHS):
            for index in range(_BLOCKS_PER_STAGE):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(width, out_width, stride, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs))
                width = out_width
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[N, H, W, in_channels]`` to the feature map ``[N, ~H/32, ~W/32, 512]``.

        Raises:
          ValueError: if ``x`` is not rank 4 with ``in_channels`` trailing channels.
        """
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"ResNet18 expects channels-last images [N, H, W, {self.in_channels}], got shape {x.shape}."
            )
        x = nnx.relu(self.bn(self.conv(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        return x


def _check_layout(layout: str, layouts: Sequence[str], encoder: str) -> None:
    """Raises a ValueError naming the valid layouts if ``layout`` is unknown."""
    if layout not in layouts:
        raise ValueError(f"{encoder}: unknown layout {layout!r}; valid layouts are {sorted(layouts)}.")


def audio_layout(shape: Sequence[int]) -> str:
    """The :class:`AudioEncoder` layout of one example's spectrogram shape.

    ``[F, T]`` and ``[1, F, T]`` read as ``"NCHW"``, ``[F, T, 1]`` as ``"NHWC"``.

    Raises:
      ValueError: if the shape is neither rank 2 nor a one-channel rank 3.
    """
    shape = tuple(shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
        return "NCHW"
    if len(shape) == 3 and shape[-1] == 1:
        return "NHWC"
    raise ValueError(
        f"an audio (ResNet-18) encoder reads one spectrogram per example, [F, T], [1, F, T] or [F, T, 1]; "
        f"got per-example shape {shape}. Use encoder kind 'mlp' for vector inputs."
    )


def visual_layout(shape: Sequence[int], channels: int = 3) -> str:
    """The :class:`VisualEncoder` layout of one example's clip shape.

    Channels last (``[T, H, W, C]``) wins, then the protocol's ``[C, T, H, W]``,
    then ``[T, C, H, W]``; so a channels-first clip of ``T = C`` frames reads as
    ``"BCTHW"`` (pass the layout explicitly for ``"BTCHW"``).

    Raises:
      ValueError: if the shape is not rank 4 or no axis holds ``channels`` entries.
    """
    shape = tuple(shape)
    if len(shape) == 4:
        for layout, axis in (("BTHWC", 3), ("BCTHW", 0), ("BTCHW", 1)):
            if shape[axis] == channels:
                return layout
    raise ValueError(
        f"a visual (ResNet-18) encoder reads one clip of frames per example, [T, H, W, {channels}], "
        f"[{channels}, T, H, W] or [T, {channels}, H, W]; got per-example shape {shape}. For a single image "
        "add a frame axis of length 1."
    )


def _channels_last(x: jax.Array, layout: str, layouts: dict[str, tuple[int, ...]], channels: int, encoder: str):
    """Transposes ``x`` from ``layout`` to channels-last and checks its channel count.

    Raises:
      ValueError: if the channel axis of ``layout`` does not hold ``channels`` entries.
    """
    y = jnp.transpose(x, layouts[layout])
    if y.shape[-1] != channels:
        raise ValueError(
            f"{encoder} expects {channels} channel(s) in layout {layout!r}, got shape {x.shape}; "
            f"pass layout= one of {sorted(layouts)} to match the data."
        )
    return y


def _mean_f32(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Average over ``axes``, accumulated and returned in float32."""
    return jnp.mean(x, axis=axes, dtype=jnp.float32)


class AudioEncoder(nnx.Module):
    """ResNet-18 over a one-channel spectrogram, globally average-pooled to 512-d.

    Args:
      layout: layout of rank-4 inputs: ``"NCHW"`` (the protocol's ``[B, 1, F, T]``,
        default) or ``"NHWC"`` (``[B, F, T, 1]``). Rank-3 inputs ``[B, F, T]`` are
        accepted whatever the layout.
      dtype: computation dtype, e.g. ``jnp.bfloat16``; parameters stay float32.
      bn_scale_std: see :class:`ResNet18`.
      rngs: random streams for initialisation.

    Attributes:
      out_features: width of the output feature vector (512).
    """

    def __init__(self, *, layout: str = "NCHW", dtype=None, bn_scale_std: float = 0.0, rngs: nnx.Rngs):
        _check_layout(layout, _AUDIO_LAYOUTS, "AudioEncoder")
        self.layout = layout
        self.out_features = FEATURE_DIM
        self.trunk = ResNet18(1, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)

    def __call__(self, spectrogram: jax.Array) -> jax.Array:
        """Encodes spectrograms ``[B, F, T]`` or rank 4 in ``layout`` to ``[B, 512]`` float32.

        Raises:
          ValueError: for a rank other than 3 or 4, or more than one channel.
        """
        if spectrogram.ndim == 3:
            x = spectrogram[..., None]
        elif spectrogram.ndim == 4:
            x = _channels_last(spectrogram, self.layout, _AUDIO_LAYOUTS, 1, "AudioEncoder")
        else:
            raise ValueError(
                "AudioEncoder expects a spectrogram [B, F, T] or a rank-4 batch in layout "
                f"{self.layout!r}, got shape {spectrogram.shape}."
            )
        return _mean_f32(self.trunk(x), (1, 2))


class VisualEncoder(nnx.Module):
    """ResNet-18 over a clip of frames: frames folded into the batch, pooled over (T, H, W).

    Args:
      layout: layout of the rank-5 clip batch: ``"BCTHW"`` (the protocol's
        ``[B, 3, T, H, W]``, default), ``"BTCHW"`` (``[B, T, 3, H, W]``) or
        ``"BTHWC"`` (``[B, T, H, W, 3]``, no transpose needed).
      in_channels: channels per frame (3 for RGB).
      dtype: computation dtype, e.g. ``jnp.bfloat16``; parameters stay float32.
      bn_scale_std: see :class:`ResNet18`.
      rngs: random streams for initialisation.

    Attributes:
      out_features: width of the output feature vector (512).
    """

    def __init__(
        self,
        *,
        layout: str = "BCTHW",
        in_channels: int = 3,
        dtype=None,
        bn_scale_std: float = 0.0,
        rngs: nnx.Rngs,
    ):
        _check_layout(layout, _VISUAL_LAYOUTS, "VisualEncoder")
        self.layout = layout
        self.out_features = FEATURE_DIM
        self.trunk = ResNet18(in_channels, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)

    def __call__(self, clip: jax.Array) -> jax.Array:
        """Encodes a clip batch (rank 5, in ``layout``) to ``[B, 512]`` float32.

        The result is the mean of the trunk's feature map over frames and space,
        so it does not depend on the order of the frames (in eval mode). Integer
        frames (``uint8`` RGB in 0..255) are ImageNet-normalised first.

        Raises:
          ValueError: if ``clip`` is not rank 5 or has the wrong number of channels.
        """
        if clip.ndim != 5:
            raise ValueError(
                f"VisualEncoder expects a rank-5 clip batch in layout {self.layout!r}, got shape {clip.shape}."
            )
        x = _channels_last(clip, self.layout, _VISUAL_LAYOUTS, self.trunk.in_channels, "VisualEncoder")
        if jnp.issubdtype(x.dtype, jnp.integer):
            x = (x.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        batch, frames = x.shape[:2]
        features = self.trunk(x.reshape(batch * frames, *x.shape[2:]))
        return _mean_f32(features.reshape(batch, frames, *features.shape[1:]), (1, 2, 3))
