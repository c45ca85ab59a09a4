"""PID-controlled XOR (SynIB paper App. F.2).

Each example's label comes from exactly one active source: unique to x0
(``u1``), unique to x1 (``u2``), redundant (``red``) or synergistic (``syn``,
an XOR of two hidden bits). Sources write into fixed coordinate blocks of the
32-d modalities through fixed random projections; inactive blocks stay noise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits

DIM = 32
LATENT = 4
BLOCKS = {"u1": slice(0, 6), "u2": slice(0, 6), "red": slice(6, 12), "syn": slice(12, 18)}
SOURCES = ("u1", "u2", "red", "syn")
PROJECTION_SEED = 999
POOL, N_TEST, N_VAL = 2000, 4000, 200


def projections(seed: int = PROJECTION_SEED) -> dict[str, jax.Array]:
    """The six fixed ``[32, 4]`` projections ``P_u0, P_u1, P_r0, P_r1, P_s0, P_s1`` (entries N(0, 0.5²))."""
    names = ("u0", "u1", "r0", "r1", "s0", "s1")
    keys = jax.random.split(jax.random.key(seed), len(names))
    return {n: 0.5 * jax.random.normal(k, (DIM, LATENT)) for n, k in zip(names, keys)}


def _signed_latent(key, sign):
    """``|N(0, 3² I_4)| · sign`` per example."""
    return jnp.abs(3.0 * jax.random.normal(key, (sign.shape[0], LATENT))) * sign[:, None]


def generate(key: jax.Array, n: int, probs, proj: dict[str, jax.Array] | None = None) -> dict[str, jax.Array]:
    """Draws ``n`` raw (unstandardised) PID-XOR examples.

    Args:
      key: PRNG key.
      n: number of examples (static).
      probs: ``[4]`` source probabilities ``(p_u1, p_u2, p_red, p_syn)``; may be traced.
      proj: the fixed projections (default :func:`projections`).

    Returns:
      dict with ``x0``, ``x1`` ``[n, 32]``, ``y`` ``[n]``, ``source`` ``[n]`` (index
      into :data:`SOURCES`), and the oracle masks ``mask_x0``/``mask_x1`` ``[n, 32]``
      marking the synergy block of synergy-source examples.
    """
    proj = projections() if proj is None else proj
    ks = jax.random.split(key, 9)
    x0 = jax.random.normal(ks[0], (n, DIM))
    x1 = jax.random.normal(ks[1], (n, DIM))
    y = jax.random.bernoulli(ks[2], 0.5, (n,)).astype(jnp.int32)
    source = jax.random.categorical(ks[3], jnp.log(jnp.asarray(probs, jnp.float32)), shape=(n,))
    sign_y = 2.0 * y - 1.0
    b0 = jax.random.bernoulli(ks[4], 0.5, (n,)).astype(jnp.int32)
    b1 = b0 ^ y
    z_u = _signed_latent(ks[5], sign_y)
    z_r = _signed_latent(ks[6], sign_y)
    z_s0 = _signed_latent(ks[7], 2.0 * b0 - 1.0)
    z_s1 = _signed_latent(ks[8], 2.0 * b1 - 1.0)

    def write(x, block, values, active):
        return x.at[:, block].set(jnp.where(active[:, None], values[:, block], x[:, block]))

    x0 = write(x0, BLOCKS["u1"], z_u @ proj["u0"].T, source == 0)
    x1 = write(x1, BLOCKS["u2"], z_u @ proj["u1"].T, source == 1)
    x0 = write(x0, BLOCKS["red"], z_r @ proj["r0"].T, source == 2)
    x1 = write(x1, BLOCKS["red"], z_r @ proj["r1"].T, source == 2)
    x0 = write(x0, BLOCKS["syn"], z_s0 @ proj["s0"].T, source == 3)
    x1 = write(x1, BLOCKS["syn"], z_s1 @ proj["s1"].T, source == 3)
    syn_block = jnp.zeros((DIM,)).at[BLOCKS["syn"]].set(1.0)
    oracle = jnp.where((source == 3)[:, None], syn_block, 0.0)
    return {"x0": x0, "x1": x1, "y": y, "source": source.astype(jnp.int32), "mask_x0": oracle, "mask_x1": oracle}


def simplex_grid(step: float = 0.05) -> list[tuple[float, float, float, float]]:
    """The Fig. 7 grid: ``p_u2 = 0``, ``p_u1, p_syn`` on a ``step`` grid, ``p_red = 1 − p_u1 − p_syn``."""
    k = int(round(1 / step))
    return [
        (round(i * step, 10), 0.0, round((k - i - j) * step, 10), round(j * step, 10))
        for i in range(k + 1) for j in range(k + 1 - i)
    ]


def splits(seed: int, probs, *, pool: int = POOL, n_test: int = N_TEST, n_val: int = N_VAL) -> DatasetSplits:
    """Train/val/test splits standardised with the train statistics.

    The pool of ``pool`` examples is drawn with ``seed`` and split by a
    permutation seeded with ``seed + 12345``; the test set uses ``seed + 1``.
    """
    probs = np.asarray(probs, np.float32)
    if probs.shape != (4,) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0, atol=1e-5):
        raise ValueError(f"probs must be 4 non-negative numbers (p_u1, p_u2, p_red, p_syn) summing to 1, got {probs}")
    proj = projections()
    pool_data = jax.device_get(generate(jax.random.key(seed), pool, probs, proj))
    test_data = jax.device_get(generate(jax.random.key(seed + 1), n_test, probs, proj))
    perm = np.asarray(jax.random.permutation(jax.random.key(seed + 12345), pool))
    parts = {"train": perm[: pool - n_val], "val": perm[pool - n_val:]}
    mean = {m: pool_data[m][parts["train"]].mean(0) for m in ("x0", "x1")}
    std = {m: pool_data[m][parts["train"]].std(0) + 1e-7 for m in ("x0", "x1")}

    def dataset(data, idx, split):
        return ArrayDataset(
            inputs={m: ((np.asarray(data[m])[idx] - mean[m]) / std[m]).astype(np.float32) for m in ("x0", "x1")},
            label=np.asarray(data["y"])[idx],
            num_classes=2,
            meta={"source": np.asarray(data["source"])[idx],
                  "mask/x0": np.asarray(data["mask_x0"])[idx], "mask/x1": np.asarray(data["mask_x1"])[idx]},
            name=f"pid_xor[{split}, probs={tuple(np.round(probs, 3))}, seed={seed}]",
            class_names=("0", "1"),
            group_names=SOURCES,
        )

    return DatasetSplits(
        train=dataset(pool_data, parts["train"], "train"),
        val=dataset(pool_data, parts["val"], "val"),
        test=dataset(test_data, np.arange(n_test), "test"),
    )
