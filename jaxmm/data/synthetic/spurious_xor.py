"""Spurious-XOR (SynIB paper App. F.1).

``y = b0 XOR b1``: modality ``x0`` encodes ``b0`` and ``x1`` encodes ``b1`` in
coordinates 0..3, so neither modality alone predicts ``y``. ``x0`` also carries
a spurious block (coordinates 4..9) correlated with ``y`` at strength ``α`` in
train/val and uncorrelated (``α = 0``) at test.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits

DIM = 64
SIGNAL = slice(0, 4)
SPUR = slice(4, 10)
SIZES = {"train": 300, "val": 120, "test": 30000}
DATA_SEED_OFFSETS = {"train": 101, "val": 151, "test": 201}


def generate(key: jax.Array, n: int, alpha) -> dict[str, jax.Array]:
    """Draws ``n`` Spurious-XOR examples.

    Args:
      key: PRNG key.
      n: number of examples (static).
      alpha: spurious strength; values above 1 give an amplified deterministic
        shortcut (the noise weight is clamped at 0). May be traced.

    Returns:
      dict with ``x0``, ``x1`` ``[n, 64]`` float32, ``y`` ``[n]`` int32, ``bits``
      ``[n, 2]`` and the oracle corruption masks ``mask_x0``/``mask_x1`` ``[n, 64]``
      (1 on the signal block, the cross-modal XOR evidence).
    """
    k_bits, k_x0, k_x1, k_s0, k_s1, k_spur = jax.random.split(key, 6)
    bits = jax.random.bernoulli(k_bits, 0.5, (n, 2)).astype(jnp.int32)
    y = bits[:, 0] ^ bits[:, 1]
    x0 = jax.random.normal(k_x0, (n, DIM))
    x1 = jax.random.normal(k_x1, (n, DIM))
    sign = 2.0 * bits - 1.0
    x0 = x0.at[:, SIGNAL].set(2.2 * sign[:, :1] + 0.55 * jax.random.normal(k_s0, (n, 4)))
    x1 = x1.at[:, SIGNAL].set(2.2 * sign[:, 1:] + 0.55 * jax.random.normal(k_s1, (n, 4)))
    noise_weight = jnp.sqrt(jnp.maximum(0.0, 1.0 - jnp.asarray(alpha, jnp.float32) ** 2))
    spur = alpha * (2.0 * y[:, None] - 1.0) + noise_weight * jax.random.normal(k_spur, (n, 6))
    x0 = x0.at[:, SPUR].set(1.3 * spur)
    oracle = jnp.zeros((n, DIM)).at[:, SIGNAL].set(1.0)
    return {"x0": x0, "x1": x1, "y": y, "bits": bits, "mask_x0": oracle, "mask_x1": oracle}


def splits(seed: int, alpha: float, sizes: dict[str, int] | None = None) -> DatasetSplits:
    """Train/val/test splits with the paper's data seeds (seed+101, +151, +201).

    The spur has strength ``alpha`` in train and val and 0 in test.
    """
    sizes = {**SIZES, **(sizes or {})}
    out = {}
    for split in ("train", "val", "test"):
        key = jax.random.key(seed + DATA_SEED_OFFSETS[split])
        data = jax.device_get(generate(key, sizes[split], 0.0 if split == "test" else alpha))
        out[split] = ArrayDataset(
            inputs={"x0": np.asarray(data["x0"]), "x1": np.asarray(data["x1"])},
            label=np.asarray(data["y"]),
            num_classes=2,
            meta={"mask/x0": np.asarray(data["mask_x0"]), "mask/x1": np.asarray(data["mask_x1"])},
            name=f"spurious_xor[{split}, alpha={alpha}, seed={seed}]",
        )
    return DatasetSplits(**out)
