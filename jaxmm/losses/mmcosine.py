"""MMCosine (Xu et al., ICASSP 2023): normalised (cosine) fusion logits.

As the official ``main_CD.py`` (``GeWu-Lab/MMCosine_ICASSP23``): each modality's slice ``W_m`` of
the concatenation head is used without bias, with features and class weight vectors L2-normalised,
and the modality logits are summed: ``out = Σ_m s · cos(z_m, w_{m,k})``. Train with CE on ``out``.
Kernels use the Flax layout ``[D_m, K]`` (one column per class).
"""
from __future__ import annotations

from typing import Sequence

import jax

from jaxmm.losses._common import l2_normalize


def cosine_logits(features: jax.Array, kernel: jax.Array, *, scale=10.0) -> jax.Array:
    """One modality's logits ``s · ⟨z/‖z‖, w_k/‖w_k‖⟩``.

    Args:
      features: ``[B, D]`` features.
      kernel: ``[D, K]`` weights (columns are the class vectors ``w_k``; no bias).
      scale: ``s`` (official 10; BalanceBenchmark 15; MCR's AVE re-run 1).

    Returns:
      ``[B, K]`` logits in ``[−s, s]``, invariant to the scale of ``features`` and of each column.
    """
    if features.ndim != 2 or kernel.ndim != 2 or features.shape[1] != kernel.shape[0]:
        raise ValueError(f"features {features.shape} and kernel {kernel.shape} must be [B, D] "
                         "and [D, K] with the same D.")
    return scale * l2_normalize(features) @ l2_normalize(kernel, axis=0)


def cosine_fusion_logits(features: Sequence[jax.Array], kernels: Sequence[jax.Array], *,
                         scale=10.0) -> jax.Array:
    """Fused MMCosine logits ``Σ_m cosine_logits(z_m, W_m)``.

    Args:
      features: one ``[B, D_m]`` array per modality.
      kernels: one ``[D_m, K]`` kernel per modality (e.g. the row blocks of a ``[Σ D_m, K]``
        concatenation kernel).
      scale: ``s``.

    Returns:
      ``[B, K]`` logits.
    """
    if len(features) != len(kernels) or not features:
        raise ValueError(f"pass one kernel per modality: got {len(features)} feature arrays and "
                         f"{len(kernels)} kernels.")
    return sum(cosine_logits(z, w, scale=scale) for z, w in zip(features, kernels))
