"""Video frames: reading jpg frame folders, choosing frames, train/eval transforms.

Readers store frames as ``uint8 [..., H, W, 3]`` (already resized to the eval
size) to keep host memory small; :func:`normalize` (eval) and :func:`augment`
(train: RandomResizedCrop + horizontal flip, seeded numpy) turn a batch into
ImageNet-normalised float32, channels last.
"""
from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from jaxmm.data.readers.validate import DataFormatError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def read_image(path: str | os.PathLike, size: int | tuple[int, int] | None = None,
               mode: str = "RGB") -> np.ndarray:
    """Decodes an image file to ``uint8``.

    Args:
      path: image file (any format PIL reads).
      size: resize to ``size x size`` (or ``(height, width)``) with bilinear
        interpolation, ignoring aspect ratio like torchvision ``Resize((h, w))``;
        ``None`` keeps the original size.
      mode: PIL mode, ``"RGB"`` (``[H, W, 3]``) or ``"L"`` (``[H, W]``).

    Raises:
      FileNotFoundError: if the file does not exist.
      DataFormatError: if PIL cannot decode it (unknown format, truncated data).
    """
    try:
        with Image.open(path) as img:
            return resize(np.asarray(img.convert(mode), np.uint8), size)
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises UnidentifiedImageError / OSError / SyntaxError
        raise DataFormatError(f"unreadable image {path}: {e}") from e


def resize(image: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """Bilinear resize of a ``uint8 [H, W(, C)]`` image to ``size`` (``None``: unchanged)."""
    if size is None:
        return image
    h, w = (size, size) if isinstance(size, int) else size
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), np.uint8)


def list_frames(directory: str | os.PathLike, pattern: str = "*.jpg") -> list[Path]:
    """Frame files in ``directory`` matching ``pattern``, sorted by name."""
    return sorted(Path(directory).glob(pattern))


def choose_frames(num_available: int, num_frames: int, mode: str = "first",
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the frames to keep from a clip of ``num_available`` frames.

    Args:
      num_available: frames in the clip (> 0).
      num_frames: frames to keep (T).
      mode: ``"first"`` (the first T, OGM-GE eval), ``"uniform"`` (T evenly spaced),
        or ``"random"`` (T distinct random frames in temporal order; needs ``rng``).
      rng: numpy generator for ``"random"``.

    Returns:
      ``[num_frames]`` int indices in temporal order. Clips shorter than T are
      cycled (frames repeat).
    """
    if num_available < 1:
        raise ValueError("a clip needs at least one frame")
    if num_available < num_frames:
        return np.arange(num_frames) % num_available
    if mode == "first":
        return np.arange(num_frames)
    if mode == "uniform":
        return np.linspace(0, num_available - 1, num_frames).round().astype(np.int64)
    if mode == "random":
        if rng is None:
            raise ValueError("mode='random' needs an rng")
        return np.sort(rng.choice(num_available, num_frames, replace=False))
    raise ValueError(f"unknown frame mode {mode!r}; use 'first', 'uniform' or 'random'")


def normalize(frames: np.ndarray) -> np.ndarray:
    """``uint8 [..., 3]`` -> ImageNet-normalised float32 (eval transform)."""
    return (frames.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box ``(top, left, h, w)`` (torchvision's sampling rule).

    Tries 10 times to draw an area fraction in ``scale`` and a log-uniform aspect
    ratio in ``ratio`` that fits; otherwise falls back to the largest centred crop
    with the ratio clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def crop_flip(frames: np.ndarray, rng: np.random.Generator, size: int | None = None,
              flip_prob: float = 0.5) -> np.ndarray:
    """Per-frame RandomResizedCrop + horizontal flip, staying ``uint8``.

    Every frame gets its own crop and flip, as OGM-GE applies its torchvision
    transform per frame.

    Args:
      frames: ``uint8 [..., H, W, 3]`` (e.g. a batch ``[B, T, H, W, 3]``).
      rng: numpy generator (seed it per step for reproducible runs).
      size: output side (default: keep ``H x W``).
      flip_prob: probability of a horizontal flip.

    Returns:
      uint8 ``[..., size, size, 3]``.

    Raises:
      ValueError: ``frames`` is not ``uint8 [..., H, W, 3]``.
    """
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"crop_flip needs uint8 RGB frames [..., H, W, 3] (as the readers store them), "
                         f"got {frames.dtype} {frames.shape}")
    lead, (height, width) = frames.shape[:-3], frames.shape[-3:-1]
    out_h, out_w = (height, width) if size is None else (size, size)
    flat = frames.reshape((-1, height, width, 3))
    draws = []  # drawn in order, so the result does not depend on the threads
    for _ in range(len(flat)):
        top, left, h, w = random_resized_crop_box(height, width, rng)
        draws.append(((left, top, left + w, top + h), rng.random() < flip_prob))
    out = np.empty((len(flat), out_h, out_w, 3), np.uint8)

    def crop(i: int) -> None:
        box, flip = draws[i]
        image = np.asarray(Image.fromarray(flat[i]).resize((out_w, out_h), Image.BILINEAR, box=box))
        out[i] = image[:, ::-1] if flip else image

    list(_resize_pool().map(crop, range(len(flat))))  # PIL resizes without holding the GIL
    return out.reshape(lead + (out_h, out_w, 3))


@functools.lru_cache(maxsize=1)
def _resize_pool() -> ThreadPoolExecutor:
    """The process-wide thread pool of :func:`crop_flip` (one thread per core)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="crop_flip")


def augment(frames: np.ndarray, rng: np.random.Generator, size: int | None = None,
            flip_prob: float = 0.5) -> np.ndarray:
    """Train transform: :func:`crop_flip` then ImageNet normalisation (float32 ``[..., size, size, 3]``)."""
    return normalize(crop_flip(frames, rng, size, flip_prob))
