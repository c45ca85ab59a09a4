"""Frame augmentation on the device: torchvision's RandomResizedCrop and a horizontal flip, in JAX.

:func:`random_resized_crop_flip` takes ``uint8 [..., H, W, 3]`` frames and gives every frame its own
crop box, drawn as torchvision's ``RandomResizedCrop.get_params`` draws it (an area fraction uniform
in ``scale``, an aspect ratio log-uniform in ``ratio``, 10 attempts, then the centred fallback; the
10 attempts are drawn at once and the first that fits is taken), resizes the box back to ``H x W``
with bilinear interpolation (pixel centres at half-integers, edges clamped, as PIL's bilinear
upsampling of a box) and flips it horizontally with probability ``flip_prob``. Everything is traced
(jit, vmap, sharding), so the trainer runs it inside its train step and the host only gathers the
cached ``uint8`` arrays. :func:`augment_inputs` seeds it from the run's key and the step, so a
resumed run draws the same crops.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10
_STREAM = 0x61756720  # folded into the run's key: the augmentation's own random stream


class CropBoxes(NamedTuple):
    """Crop boxes in pixels (int32 arrays of one shape): rows ``top:top + height``, columns ``left:left + width``."""

    top: jax.Array
    left: jax.Array
    height: jax.Array
    width: jax.Array


def _check_range(name: str, pair: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in pair)
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {tuple(pair)}")
    return lo, hi


def center_crop_box(height: int, width: int, ratio: Sequence[float] = RATIO) -> tuple[int, int, int, int]:
    """torchvision's fallback box ``(top, left, h, w)``: the whole frame, its aspect ratio clamped to ``ratio``."""
    lo, hi = _check_range("ratio", ratio)
    in_ratio = width / height
    if in_ratio < lo:
        w, h = width, int(round(width / lo))
    elif in_ratio > hi:
        h, w = height, int(round(height * hi))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_boxes(key: jax.Array, shape: tuple[int, ...], height: int, width: int,
               scale: Sequence[float] = SCALE, ratio: Sequence[float] = RATIO) -> CropBoxes:
    """Independent RandomResizedCrop boxes of shape ``shape`` for ``height x width`` frames.

    Each box draws :data:`ATTEMPTS` candidates (area ``height * width * U(scale)``, aspect
    ``exp(U(log ratio))``, ``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))``),
    keeps the first with ``0 < w <= width`` and ``0 < h <= height`` at a uniform position, and
    falls back to :func:`center_crop_box` when none fits.

    Raises:
      ValueError: ``scale`` or ``ratio`` is not an increasing positive pair.
    """
    scale, ratio = _check_range("scale", scale), _check_range("ratio", ratio)
    k_draws, k_place = jax.random.split(key)
    draws = jax.random.uniform(k_draws, (*shape, ATTEMPTS, 2))  # per attempt: area fraction, log aspect ratio
    area = height * width * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_lo + (log_hi - log_lo) * draws[..., 1])
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits, axis=-1)[..., None]  # the first attempt that fits (0 when none does)
    found = jnp.any(fits, axis=-1)
    top0, left0, h0, w0 = center_crop_box(height, width, ratio)
    h = jnp.where(found, jnp.take_along_axis(h, first, -1)[..., 0], h0)
    w = jnp.where(found, jnp.take_along_axis(w, first, -1)[..., 0], w0)
    place = jax.random.uniform(k_place, (*shape, 2))  # uniform position among the height - h + 1 (width - w + 1)
    top = jnp.minimum(jnp.floor(place[..., 0] * (height - h + 1)).astype(jnp.int32), height - h)
    left = jnp.minimum(jnp.floor(place[..., 1] * (width - w + 1)).astype(jnp.int32), width - w)
    top, left = jnp.where(found, top, top0), jnp.where(found, left, left0)
    return CropBoxes(top, left, h, w)


def _sample_positions(start: jax.Array, length: jax.Array, size: int) -> jax.Array:
    """Input coordinates of the ``size`` output pixel centres when ``start:start + length`` is stretched to ``size``."""
    step = length.astype(jnp.float32) / size
    return start.astype(jnp.float32) + (jnp.arange(size, dtype=jnp.float32) + 0.5) * step - 0.5


def _interpolate(x: jax.Array, positions: jax.Array, axis: int) -> jax.Array:
    """Linear interpolation of ``x`` along ``axis`` at ``positions`` (clamped to the edges)."""
    n = x.shape[axis]
    positions = jnp.clip(positions, 0, n - 1)
    lo = jnp.floor(positions).astype(jnp.int32)
    frac = (positions - lo).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    a, b = jnp.take(x, lo, axis=axis), jnp.take(x, jnp.minimum(lo + 1, n - 1), axis=axis)
    return a + (b - a) * frac


def resized_crop(frame: jax.Array, box: CropBoxes, flip: jax.Array) -> jax.Array:
    """One ``[H, W, C]`` frame's ``box`` resized back to ``H x W`` (bilinear), mirrored if ``flip``; float32.

    ``box`` holds scalars. The flip reverses the output columns' sample positions, so it costs nothing.
    """
    height, width = frame.shape[:2]
    rows = _sample_positions(box.top, box.height, height)
    cols = _sample_positions(box.left, box.width, width)
    cols = jnp.where(flip, cols[::-1], cols)
    x = _interpolate(frame.astype(jnp.float32), rows, axis=0)
    return _interpolate(x, cols, axis=1)


def random_resized_crop_flip(key: jax.Array, frames: jax.Array, scale: Sequence[float] = SCALE,
                             ratio: Sequence[float] = RATIO, flip_prob: float = 0.5) -> jax.Array:
    """Per-frame RandomResizedCrop (back to the frame size) and horizontal flip of ``uint8 [..., H, W, 3]`` frames.

    Args:
      key: PRNG key; every frame draws its own box and flip from it.
      frames: ``uint8 [..., H, W, 3]``.
      scale: range of the crop's area as a fraction of the frame's.
      ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
      flip_prob: probability of a horizontal flip.

    Returns:
      ``uint8`` frames of the same shape (bilinear values rounded half up).

    Raises:
      ValueError: ``frames`` is not ``uint8 [..., H, W, 3]``, or bad ``scale``/``ratio``/``flip_prob``.
    """
    if frames.dtype != jnp.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"random_resized_crop_flip needs uint8 RGB frames [..., H, W, 3] (as the readers store "
                         f"them), got {frames.dtype} {frames.shape}")
    if not 0 <= flip_prob <= 1:
        raise ValueError(f"flip_prob must be a probability in [0, 1], got {flip_prob}")
    lead, (height, width) = frames.shape[:-3], frames.shape[-3:-1]
    box_key, flip_key = jax.random.split(key)
    boxes = crop_boxes(box_key, lead, height, width, scale, ratio)
    flips = jax.random.bernoulli(flip_key, flip_prob, lead)
    flat = lambda x: x.reshape((-1, *x.shape[len(lead):]))
    out = jax.vmap(resized_crop)(flat(frames), jax.tree.map(flat, boxes), flat(flips))
    return jnp.clip(jnp.floor(out + 0.5), 0, 255).astype(jnp.uint8).reshape(frames.shape)


def augment_inputs(key: jax.Array, step: jax.Array, inputs: Mapping[str, jax.Array],
                   modalities: Sequence[str]) -> dict[str, jax.Array]:
    """``inputs`` with :func:`random_resized_crop_flip` applied to the frames of ``modalities``.

    The randomness is ``key`` (the run's key) folded with this stream's tag, the ``step`` and the
    modality's position in ``modalities``: the same run and step always draw the same crops.

    Raises:
      ValueError: a modality is not in ``inputs`` or does not hold ``uint8 [..., H, W, 3]`` frames.
    """
    missing = [m for m in modalities if m not in inputs]
    if missing:
        raise ValueError(f"frame augmentation names {missing}, which the batch lacks (inputs: {sorted(inputs)})")
    step_key = jax.random.fold_in(jax.random.fold_in(key, _STREAM), step)
    out = dict(inputs)
    for i, m in enumerate(modalities):
        out[m] = random_resized_crop_flip(jax.random.fold_in(step_key, i), inputs[m])
    return out
