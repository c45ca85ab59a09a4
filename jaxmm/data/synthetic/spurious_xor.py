"""Spurious-XOR (SynIB paper App. F.1).

``y = b0 XOR b1``: modality ``x0`` encodes ``b0`` and ``x1`` encodes ``b1`` in
coordinates 0..3, so neither modality alone predicts ``y``. ``x0`` also carries
a spurious block (coordinates 4..9) correlated with ``y`` at strength ``α`` in
train/val and uncorrelated (``α = 0``) at test.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits

DIM = 64
SIGNAL = slice(0, 4)
SPUR = slice(4, 10)
SIZES = {"train": 300, "val": 120, "test": 30000}
DATA_SEED_OFFSETS = {"train": 101, "val": 151, "test": 201}


def generate(key: jax.Array, n: int, alpha: float) -> dict[str, np.ndarray]:
    """Draws ``n`` Spurious-XOR examples.

    The random draws are jax's; the arithmetic is float32 numpy, one rounding per operation (no
    fused multiply-adds, no per-operation dispatch or compilation), the values of the
    operation-by-operation jax computation.

    Args:
      key: PRNG key.
      n: number of examples.
      alpha: spurious strength; values above 1 give an amplified deterministic
        shortcut (the noise weight is clamped at 0).

    Returns:
      dict with ``x0``, ``x1`` ``[n, 64]`` float32, ``y`` ``[n]`` int32, ``bits``
      ``[n, 2]`` and the oracle corruption masks ``mask_x0``/``mask_x1`` ``[n, 64]``
      (1 on the signal block, the cross-modal XOR evidence; one shared read-only array).
    """
    f32 = np.float32
    k_bits, k_x0, k_x1, k_s0, k_s1, k_spur = jax.random.split(key, 6)
    bits, x0, x1, s0, s1, spur_noise = (
        _draw(jax.random.bernoulli, k_bits, (n, 2), 0.5), _draw(jax.random.normal, k_x0, (n, DIM)),
        _draw(jax.random.normal, k_x1, (n, DIM)), _draw(jax.random.normal, k_s0, (n, 4)),
        _draw(jax.random.normal, k_s1, (n, 4)), _draw(jax.random.normal, k_spur, (n, 6)))
    bits = bits.astype(np.int32)
    y = bits[:, 0] ^ bits[:, 1]
    x0, x1 = np.array(x0), np.array(x1)
    sign = f32(2.0) * bits.astype(f32) - f32(1.0)
    x0[:, SIGNAL] = f32(2.2) * sign[:, :1] + f32(0.55) * s0
    x1[:, SIGNAL] = f32(2.2) * sign[:, 1:] + f32(0.55) * s1
    a = f32(alpha)
    noise_weight = np.sqrt(np.maximum(f32(0.0), f32(1.0) - a * a))
    spur = a * (f32(2.0) * y[:, None].astype(f32) - f32(1.0)) + noise_weight * spur_noise
    x0[:, SPUR] = f32(1.3) * spur
    oracle = _oracle_mask(n)
    return {"x0": x0, "x1": x1, "y": y, "bits": bits, "mask_x0": oracle, "mask_x1": oracle}


# Sizes a draw is rounded up to; a larger draw keeps its own size.
DRAW_SIZES = (4096, 32768, 262144)


def _draw(sample, key: jax.Array, shape: tuple[int, ...], *args) -> np.ndarray:
    """``sample(key, *args, shape)`` on the host, drawn as the first values of a draw of a few fixed sizes.

    jax's counter-based random bits depend only on the key and an element's flat index, so the
    first ``prod(shape)`` values of a longer draw are those of the draw of ``shape``, bit for bit;
    rounding sizes up to :data:`DRAW_SIZES` lets the 12 shapes of the train, validation and test
    splits share 6 compiled programs instead of compiling one each. The draw is cut and shaped in
    numpy, which compiles nothing.
    """
    size = math.prod(shape)
    drawn = next((s for s in DRAW_SIZES if s >= size), size)
    return np.asarray(sample(key, *args, (drawn,)))[:size].reshape(shape)


@functools.lru_cache(maxsize=8)
def _oracle_mask(n: int) -> np.ndarray:
    """``[n, 64]`` read-only, 1 on the signal block: one array shared by every split of size ``n``."""
    mask = np.zeros((n, DIM), np.float32)
    mask[:, SIGNAL] = 1.0
    mask.flags.writeable = False
    return mask


def _split(seed: int, split: str, n: int, alpha: float) -> ArrayDataset:
    data = generate(jax.random.key(seed + DATA_SEED_OFFSETS[split]), n, alpha)
    return ArrayDataset(inputs={"x0": data["x0"], "x1": data["x1"]}, label=data["y"], num_classes=2,
                        meta={"mask/x0": data["mask_x0"], "mask/x1": data["mask_x1"]},
                        name=f"spurious_xor[{split}, alpha={alpha}, seed={seed}]")


@functools.lru_cache(maxsize=4)
def _test_split(seed: int, n: int) -> ArrayDataset:
    """A seed's test split (α = 0 whatever the training α), drawn once and shared read-only."""
    ds = _split(seed, "test", n, 0.0)
    for x in (*ds.inputs.values(), ds.label, *ds.meta.values()):
        x.flags.writeable = False
    return ds


def splits(seed: int, alpha: float, sizes: dict[str, int] | None = None) -> DatasetSplits:
    """Train/val/test splits with the paper's data seeds (seed+101, +151, +201).

    The spur has strength ``alpha`` in train and val and 0 in test, so every ``alpha`` of a seed
    shares one read-only test split.
    """
    sizes = {**SIZES, **(sizes or {})}
    with ThreadPoolExecutor(1) as pool:  # the test split's programs compile while the others' do
        test = pool.submit(_test_split, seed, sizes["test"])
        train, val = _split(seed, "train", sizes["train"], alpha), _split(seed, "val", sizes["val"], alpha)
        test = dataclasses.replace(test.result(), name=f"spurious_xor[test, alpha={alpha}, seed={seed}]")
    return DatasetSplits(train=train, val=val, test=test)
