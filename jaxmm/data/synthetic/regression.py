"""Two-modality regression with redundant, unique and synergistic parts and a known Bayes-optimal MSE.

Six independent standard-normal latents per example: a redundant ``r``, a unique
``u_m`` and a synergy factor ``s_m`` for each modality ``m ∈ {x0, x1}``. The target is

    y = a_r · r + a_0 · u_0 + a_1 · u_1 + a_s · s_0 · s_1 + ε,        ε ~ N(0, σ²),

float32 ``[N]``; with the defaults ``Var y = 0.64 + 0.36 + 0.36 + 0.64 + 0.25 = 2.25``
(std 1.5), so about 95% of the targets lie in ``[−3, 3]`` (the MOSI/MOSEI range;
they are not clipped, which would break the closed forms below).

Modality ``x_m`` (``dim`` wide) holds ``r`` in coordinate 0, ``u_m`` in 1 and
``s_m`` in 2, exactly (no observation noise), and i.i.d. N(0, 1) nuisance
coordinates after them. Both modalities see ``r`` (redundancy); only ``x_m``
sees ``u_m`` (uniqueness); ``s_0 · s_1`` has mean 0 given either factor alone, so
neither modality alone can predict any of it (synergy).

Bayes-optimal predictions (the conditional means, :func:`bayes_prediction`) and MSEs
(:func:`bayes_mse`), using ``E[s_0 s_1 | s_0] = 0`` and ``Var(s_0 s_1) = 1``:

    both        E[y | x0, x1] = a_r r + a_0 u_0 + a_1 u_1 + a_s s_0 s_1     MSE = σ²
    x0 only     E[y | x0]     = a_r r + a_0 u_0                            MSE = a_1² + a_s² + σ²
    x1 only     E[y | x1]     = a_r r + a_1 u_1                            MSE = a_0² + a_s² + σ²
    neither     E[y]          = 0                                          MSE = Var y

Defaults: both 0.25, one modality 1.25, none 2.25.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from jaxmm.data.types import ArrayDataset, DatasetSplits

MODALITIES = ("x0", "x1")
REDUNDANT, UNIQUE, SYNERGY = 0, 1, 2  # the latent coordinates of every modality
SIZES = {"train": 2000, "val": 500, "test": 10000}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class RegressionConfig:
    """Weights of the target's parts and the input width.

    Attributes:
      dim: width of each modality (at least 3: the latents, then nuisance coordinates).
      redundant: ``a_r``, weight of the latent both modalities see.
      unique: ``(a_0, a_1)``, weights of the latents only ``x0`` / only ``x1`` sees.
      synergy: ``a_s``, weight of the product ``s_0 · s_1``.
      noise_std: ``σ``, standard deviation of the target noise (the Bayes-optimal RMSE).
    """

    dim: int = 16
    redundant: float = 0.8
    unique: tuple[float, float] = (0.6, 0.6)
    synergy: float = 0.8
    noise_std: float = 0.5

    def __post_init__(self):
        if self.dim < 3:
            raise ValueError(f"dim={self.dim} is too small: each modality needs 3 latent coordinates")
        if len(self.unique) != 2:
            raise ValueError(f"unique must be two weights (x0, x1), got {self.unique!r}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {self.noise_std}")

    def target_variance(self) -> float:
        """``Var y = a_r² + a_0² + a_1² + a_s² + σ²``."""
        return float(self.redundant ** 2 + sum(a ** 2 for a in self.unique) + self.synergy ** 2
                     + self.noise_std ** 2)


def generate(key: jax.Array, n: int, config: RegressionConfig = RegressionConfig()) -> dict[str, jax.Array]:
    """Draws ``n`` examples (vmappable over ``key``).

    Args:
      key: PRNG key.
      n: number of examples (static).
      config: the task (static).

    Returns:
      dict with ``x0``, ``x1`` ``[n, dim]`` float32, the target ``y`` ``[n]`` float32
      and its parts ``redundant``, ``unique/x0``, ``unique/x1``, ``synergy``, ``noise``
      ``[n]`` (weighted, so they sum to ``y``).
    """
    k_latent, k_noise, k_x0, k_x1 = jax.random.split(key, 4)
    r, u0, u1, s0, s1 = jax.random.normal(k_latent, (5, n))
    parts = {
        "redundant": config.redundant * r,
        "unique/x0": config.unique[0] * u0,
        "unique/x1": config.unique[1] * u1,
        "synergy": config.synergy * s0 * s1,
        "noise": config.noise_std * jax.random.normal(k_noise, (n,)),
    }
    out = {"y": sum(parts.values()), **parts}
    for m, k, u, s in (("x0", k_x0, u0, s0), ("x1", k_x1, u1, s1)):
        x = jax.random.normal(k, (n, config.dim))
        out[m] = x.at[:, REDUNDANT].set(r).at[:, UNIQUE].set(u).at[:, SYNERGY].set(s)
    return out


def splits(seed: int, config: RegressionConfig = RegressionConfig(),
           sizes: dict[str, int] | None = None) -> DatasetSplits:
    """Train/val/test splits drawn from ``fold_in(key(seed), split id)`` (deterministic per seed).

    Labels are float32 ``[N]`` targets, ``num_classes=1``, ``task="regression"``;
    ``meta`` holds the target's parts (see :func:`generate`).
    """
    sizes = {**SIZES, **(sizes or {})}
    out = {}
    for split, split_id in SPLIT_IDS.items():
        data = jax.device_get(generate(jax.random.fold_in(jax.random.key(seed), split_id), sizes[split], config))
        out[split] = ArrayDataset(
            inputs={m: np.asarray(data[m], np.float32) for m in MODALITIES},
            label=np.asarray(data["y"], np.float32), num_classes=1,
            meta={k: np.asarray(data[k], np.float32)
                  for k in ("redundant", "unique/x0", "unique/x1", "synergy", "noise")},
            name=f"synthetic_regression[{split}, seed={seed}]", task="regression")
    return DatasetSplits(**out)


def _check_modalities(modalities: Sequence[str]) -> None:
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; this task has {MODALITIES}")


def bayes_mse(config: RegressionConfig = RegressionConfig(), modalities: Sequence[str] = MODALITIES) -> float:
    """The Bayes-optimal (lowest possible) MSE of a predictor that sees only ``modalities`` (closed form).

    Raises:
      ValueError: an unknown modality name.
    """
    _check_modalities(modalities)
    seen = set(modalities)
    missed = config.redundant ** 2 if not seen else 0.0
    missed += sum(a ** 2 for m, a in zip(MODALITIES, config.unique) if m not in seen)
    missed += config.synergy ** 2 if seen != set(MODALITIES) else 0.0
    return float(missed + config.noise_std ** 2)


def bayes_prediction(config: RegressionConfig, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """``E[y | inputs]``, the Bayes-optimal prediction from the modalities in ``inputs`` (``[N]`` float64).

    Raises:
      ValueError: an unknown modality name, or no modality given.
    """
    _check_modalities(inputs)
    if not inputs:
        raise ValueError("give at least one modality; with none the Bayes prediction is the constant 0")
    x = {m: np.asarray(v, np.float64) for m, v in inputs.items()}
    first = next(iter(x.values()))
    pred = config.redundant * first[:, REDUNDANT]
    for m, a in zip(MODALITIES, config.unique):
        if m in x:
            pred = pred + a * x[m][:, UNIQUE]
    if len(x) == len(MODALITIES):
        pred = pred + config.synergy * x["x0"][:, SYNERGY] * x["x1"][:, SYNERGY]
    return pred
