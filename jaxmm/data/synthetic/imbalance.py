"""Imbalanced two-modality Gaussian mixture: a fast, strong modality and a slow, weak one.

The label ``y = c · F + f`` joins a coarse class ``c ∈ [0, C)`` and a fine class
``f ∈ [0, F)`` (``K = C · F`` classes, exactly balanced when ``K`` divides the
split size). Each modality ``m`` is ``x_m ~ N(μ_m(c, f), I_{d_m})`` with the
mean ``snr_m[0] · e_c`` on coordinates ``[0, C)``, ``snr_m[1] · e_f`` on
coordinates ``[C, C + F)`` and 0 on the remaining noise coordinates; with
probability ``blank_m`` an example's ``x_m`` carries no signal at all (mean 0).

Defaults: ``strong`` (8-d) shows the coarse class at SNR 3 and nothing of the
fine class; ``weak`` (64-d, mostly noise, so slower to fit) shows both at lower
SNR (1.5 and 2). ``strong`` alone resolves only ``c``; ``weak`` alone is
needed for ``f``; both together reach the highest accuracy. Bayes-optimal
accuracies: strong 0.492, weak 0.788, both 0.913 (4 classes, chance 0.25).

Bayes-optimal accuracy (uniform priors, unit isotropic noise, orthogonal
one-hot means): ``c`` and ``f`` are independent and each block's likelihood
factorises, so the MAP label is ``(argmax c, argmax f)`` and

    acc(modalities) = g_C(sqrt(Σ_m snr_m[0]²)) · g_F(sqrt(Σ_m snr_m[1]²)),
    g_k(μ) = ∫ φ(z) Φ(z + μ)^{k-1} dz          (g_1 = 1, g_2(μ) = Φ(μ / √2)),

the sum running over the observed modalities, when no observed modality is
blanked; :func:`bayes_accuracy` also covers the blanked cases.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from jaxmm.data.types import ArrayDataset, DatasetSplits

MODALITIES = ("strong", "weak")
SIZES = {"train": 1000, "val": 500, "test": 10000}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class ImbalanceConfig:
    """Shape and signal strengths of the task.

    Attributes:
      num_coarse: ``C``, coarse classes.
      num_fine: ``F``, fine classes.
      strong_dim: width of the ``strong`` modality (at least ``C + F``).
      weak_dim: width of the ``weak`` modality (at least ``C + F``).
      strong_snr: ``(coarse, fine)`` mean norms of ``strong``'s class signals.
      weak_snr: ``(coarse, fine)`` mean norms of ``weak``'s class signals.
      strong_blank: probability that an example's ``strong`` input carries no signal (pure noise).
      weak_blank: the same for ``weak``.
    """

    num_coarse: int = 2
    num_fine: int = 2
    strong_dim: int = 8
    weak_dim: int = 64
    strong_snr: tuple[float, float] = (3.0, 0.0)
    weak_snr: tuple[float, float] = (1.5, 2.0)
    strong_blank: float = 0.0
    weak_blank: float = 0.0

    def __post_init__(self):
        if self.num_coarse < 1 or self.num_fine < 1:
            raise ValueError(f"num_coarse and num_fine must be >= 1, got {self.num_coarse}, {self.num_fine}")
        for name in ("strong", "weak"):
            dim, snr = getattr(self, f"{name}_dim"), getattr(self, f"{name}_snr")
            if dim < self.num_coarse + self.num_fine:
                raise ValueError(f"{name}_dim={dim} is too small: the class signals need num_coarse + num_fine = "
                                 f"{self.num_coarse + self.num_fine} coordinates")
            if len(snr) != 2 or min(snr) < 0:
                raise ValueError(f"{name}_snr must be two non-negative numbers (coarse, fine), got {snr!r}")
            if not 0.0 <= getattr(self, f"{name}_blank") <= 1.0:
                raise ValueError(f"{name}_blank is a probability in [0, 1], got {getattr(self, f'{name}_blank')}")

    @property
    def num_classes(self) -> int:
        """``K = C · F``."""
        return self.num_coarse * self.num_fine

    def dims(self) -> dict[str, int]:
        """Modality -> width."""
        return {"strong": self.strong_dim, "weak": self.weak_dim}

    def snr(self) -> dict[str, tuple[float, float]]:
        """Modality -> ``(coarse, fine)`` SNR."""
        return {"strong": tuple(self.strong_snr), "weak": tuple(self.weak_snr)}

    def blank(self) -> dict[str, float]:
        """Modality -> probability that its signal is blanked."""
        return {"strong": self.strong_blank, "weak": self.weak_blank}

    def means(self) -> dict[str, np.ndarray]:
        """Modality -> ``[K, d_m]`` class means (row ``y = c · F + f``)."""
        c, f = np.divmod(np.arange(self.num_classes), self.num_fine)
        out = {}
        for m, (s_c, s_f) in self.snr().items():
            mu = np.zeros((self.num_classes, self.dims()[m]))
            mu[np.arange(self.num_classes), c] = s_c
            mu[np.arange(self.num_classes), self.num_coarse + f] = s_f
            out[m] = mu
        return out


def generate(key: jax.Array, n: int, config: ImbalanceConfig = ImbalanceConfig()) -> dict[str, jax.Array]:
    """Draws ``n`` examples (vmappable over ``key``).

    Args:
      key: PRNG key.
      n: number of examples (static).
      config: the task (static).

    Returns:
      dict with ``strong`` ``[n, strong_dim]``, ``weak`` ``[n, weak_dim]`` float32,
      ``y``, ``coarse``, ``fine`` and ``blank/<modality>`` (1 where that input is
      noise only) ``[n]`` int32. The labels are ``arange(n) % K`` permuted, so every
      class appears ``n // K`` or ``n // K + 1`` times.
    """
    k_label, *keys = jax.random.split(key, 1 + 2 * len(MODALITIES))
    y = jax.random.permutation(k_label, jnp.arange(n, dtype=jnp.int32) % config.num_classes)
    out = {"y": y, "coarse": y // config.num_fine, "fine": y % config.num_fine}
    means, blank, dims = config.means(), config.blank(), config.dims()
    for m, k_blank, k_noise in zip(MODALITIES, keys[::2], keys[1::2]):
        blanked = jax.random.bernoulli(k_blank, blank[m], (n,))
        mean = jnp.asarray(means[m], jnp.float32)[y] * (1.0 - blanked[:, None])
        out[m] = mean + jax.random.normal(k_noise, (n, dims[m]))
        out[f"blank/{m}"] = blanked.astype(jnp.int32)
    return out


def splits(seed: int, config: ImbalanceConfig = ImbalanceConfig(),
           sizes: dict[str, int] | None = None) -> DatasetSplits:
    """Train/val/test splits drawn from ``fold_in(key(seed), split id)`` (deterministic per seed).

    ``meta`` holds ``coarse``, ``fine`` and ``blank/<modality>``; the class names are ``c<c>f<f>``.
    """
    sizes = {**SIZES, **(sizes or {})}
    names = tuple(f"c{c}f{f}" for c in range(config.num_coarse) for f in range(config.num_fine))
    out = {}
    for split, split_id in SPLIT_IDS.items():
        data = jax.device_get(generate(jax.random.fold_in(jax.random.key(seed), split_id), sizes[split], config))
        out[split] = ArrayDataset(
            inputs={m: np.asarray(data[m]) for m in MODALITIES}, label=np.asarray(data["y"]),
            num_classes=config.num_classes,
            meta={k: np.asarray(data[k]) for k in ("coarse", "fine", *(f"blank/{m}" for m in MODALITIES))},
            name=f"imbalance[{split}, seed={seed}]", class_names=names)
    return DatasetSplits(**out)


def argmax_accuracy(mu: float, k: int, nodes: int = 96) -> float:
    """``g_k(μ) = P(μ + z_0 > max_{j<k} z_j)`` for i.i.d. standard normal ``z`` (Gauss–Hermite quadrature).

    The accuracy of ``argmax`` (the MAP rule) among ``k`` equiprobable classes with
    one-hot means of norm ``μ`` in unit isotropic noise; exact to ~1e-10 for ``μ <= 10``.
    """
    if k < 1:
        raise ValueError(f"need at least one class, got k={k}")
    x, w = np.polynomial.hermite.hermgauss(nodes)
    z = np.sqrt(2.0) * x
    return float(np.sum(w * ndtr(z + mu) ** (k - 1)) / np.sqrt(np.pi))


def bayes_accuracy(config: ImbalanceConfig = ImbalanceConfig(), modalities: Sequence[str] = MODALITIES,
                   samples: int = 400_000, seed: int = 0) -> float:
    """Bayes-optimal accuracy of the MAP classifier that sees only ``modalities``.

    Closed form when no observed modality is ever blanked (module docstring) and for
    a single modality (``(1 − q) · acc_unblanked + q / K``); otherwise the exact
    MAP rule scored on ``samples`` fresh examples (:func:`map_accuracy`, standard
    error below 1e-3 at the default size).

    Raises:
      ValueError: an unknown modality name.
    """
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; this task has {MODALITIES}")
    snr, blank = config.snr(), config.blank()
    coarse = np.sqrt(sum(snr[m][0] ** 2 for m in modalities))
    fine = np.sqrt(sum(snr[m][1] ** 2 for m in modalities))
    clean = argmax_accuracy(coarse, config.num_coarse) * argmax_accuracy(fine, config.num_fine)
    if len(modalities) == 1:
        q = blank[modalities[0]]
        return (1.0 - q) * clean + q / config.num_classes
    if all(blank[m] == 0 for m in modalities):
        return clean
    data = jax.device_get(generate(jax.random.key(seed), samples, config))
    return map_accuracy(config, {m: data[m] for m in modalities}, data["y"])


def log_likelihoods(config: ImbalanceConfig, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """``[N, K]`` log p(inputs | y) up to a per-example constant (the blanks marginalised out)."""
    total = 0.0
    for m, x in inputs.items():
        mu = config.means()[m]
        ell = np.asarray(x, np.float64) @ mu.T - 0.5 * np.sum(mu ** 2, axis=1)
        q = config.blank()[m]
        if q == 1.0:
            continue
        total = total + (ell if q == 0.0 else np.logaddexp(np.log1p(-q) + ell, np.log(q)))
    return total


def map_accuracy(config: ImbalanceConfig, inputs: dict[str, np.ndarray], labels: np.ndarray) -> float:
    """Accuracy of the MAP rule ``argmax_y p(inputs | y)`` (uniform prior) on the given examples."""
    scores = log_likelihoods(config, inputs)
    if np.ndim(scores) == 0:  # every observed modality always blanked: a fixed guess
        return float(np.mean(np.asarray(labels) == 0))
    return float(np.mean(scores.argmax(-1) == np.asarray(labels)))
