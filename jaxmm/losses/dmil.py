"""DMIL (information-theoretic decomposition, CVPR 2026) variational losses, as pure functions.

No official code exists; the objectives come from a third-party note reproducing the paper's
equations [NOTE] and every parametrisation is our inference [INF], exposed as a keyword option
with the default named in its docstring:

* intra-modality decomposition (ID) of ``Z^m`` into ``M^m`` (predictive) and ``N^m`` (residual):
  :func:`id_variational_loss` = ``L_Var(M^m, N^m)``;
* consistency decomposition (CD) of ``M^m`` into the shared ``R`` and the unique ``U^m``:
  :func:`redundancy_alignment_loss` = ``L_Align(R)`` and :func:`cd_variational_loss` =
  ``L_Var(U^m, R)``, whose MI upper bound is :func:`uniqueness_penalty` (CLUB or orthogonality;
  :func:`club_fit_loss` trains CLUB's variational network);
* synergy from the residuals: the interaction features fed to the fusion MLP
  (:func:`synergy_features`);
* gated aggregation of the four component predictions (:func:`gated_aggregate`);
* the loss weights of the three training stages (:func:`stage_term_weights`).

The paper note specifies no entropy regulariser on the gate, so none is provided.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import batch_mean, draw_rows, gather_rows, local_rows
from jaxmm.losses._common import l2_normalize
from jaxmm.losses.ce import softmax_cross_entropy
from jaxmm.losses.kl import gaussian_kl_to_standard
from jaxmm.losses.mixture import gated_log_probs

RECONSTRUCTION_ERRORS = ("sse", "mse")
ALIGNMENTS = ("infonce", "mse")
PENALTIES = ("orthogonality", "club")
MIXES = ("logits", "probs")
STAGES = (1, 2, 3)


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """A reparameterised sample ``μ + e^{logvar/2} ε`` of a diagonal Gaussian head on ``[B, ...]`` rows.

    ``ε`` of each row is that of one draw over the global batch (:func:`~jaxmm.batch_reduce.draw_rows`).
    """
    return mu + jnp.exp(0.5 * logvar) * draw_rows(functools.partial(jax.random.normal, dtype=mu.dtype), key,
                                                   mu.shape)


def id_variational_loss(z: jax.Array, reconstruction: jax.Array, mu_m: jax.Array,
                        logvar_m: jax.Array, mu_n: jax.Array, logvar_n: jax.Array, *,
                        beta_kl: float = 1.0, reconstruction_error: str = "sse",
                        detach_target: bool = True) -> jax.Array:
    """``L_Var(M^m, N^m) = β_kl [KL(q_M ‖ N(0,I)) + KL(q_N ‖ N(0,I))] + ‖Z^m − Dec([M; N])‖²``.

    The KL terms are the VIB bounds on ``I(Z; M)`` and ``I(Z; N)`` (minimised); the reconstruction
    stands in for ``I(Z; M, N)`` (maximised). ``I(M; Y)`` is the CE of a head on ``M``, added by
    the caller.

    Args:
      z: ``[B, D]`` encoder output ``Z^m``.
      reconstruction: ``[B, D]`` decoder output ``Dec([M^m; N^m])``.
      mu_m: ``[B, d]`` mean of ``q(M|Z)``.
      logvar_m: ``[B, d]`` log-variance of ``q(M|Z)``.
      mu_n: ``[B, d']`` mean of ``q(N|Z)``.
      logvar_n: ``[B, d']`` log-variance of ``q(N|Z)``.
      beta_kl: weight of the KL terms [INF, default 1].
      reconstruction_error: ``"sse"`` (sum of squares over features, the ``‖·‖²`` of the note;
        default) or ``"mse"`` (mean) [INF].
      detach_target: treat ``Z^m`` as a fixed reconstruction target, so the encoder cannot lower
        the error by shrinking ``Z`` [INF, default True].

    Returns:
      ``[B]`` per-example loss.
    """
    check_choice("reconstruction_error", reconstruction_error, RECONSTRUCTION_ERRORS)
    if z.shape != reconstruction.shape:
        raise ValueError(f"z {z.shape} and reconstruction {reconstruction.shape} must match.")
    target = jax.lax.stop_gradient(z) if detach_target else z
    squared = (target - reconstruction) ** 2
    error = jnp.sum(squared, -1) if reconstruction_error == "sse" else jnp.mean(squared, -1)
    kl = gaussian_kl_to_standard(mu_m, logvar_m) + gaussian_kl_to_standard(mu_n, logvar_n)
    return beta_kl * kl + error


def redundancy_alignment_loss(r1: jax.Array, r2: jax.Array, *, kind: str = "infonce",
                              temperature: float = 0.1) -> jax.Array:
    """``L_Align(R)``: pull the two modalities' redundancy estimates ``R^(1)``, ``R^(2)`` together.

    Args:
      r1: ``[B, d]`` ``R^(1) ~ q(R|M^1)``.
      r2: ``[B, d]`` ``R^(2) ~ q(R|M^2)``.
      kind: ``"infonce"`` (symmetric InfoNCE on cosine similarities over the global batch,
        matching pairs positive; default) or ``"mse"`` (mean squared difference) [INF: the note
        only says "alignment"].
      temperature: InfoNCE temperature [INF, default 0.1].

    Returns:
      ``[B]`` per-example loss.
    """
    check_choice("kind", kind, ALIGNMENTS)
    if r1.shape != r2.shape or r1.ndim != 2:
        raise ValueError(f"r1 {r1.shape} and r2 {r2.shape} must be [B, d] of the same shape.")
    if kind == "mse":
        return jnp.mean((r1 - r2) ** 2, axis=-1)
    # Every device scores the global batch's pairs and keeps its own rows.
    logits = gather_rows(l2_normalize(r1)) @ gather_rows(l2_normalize(r2)).T / temperature
    targets = jnp.arange(logits.shape[0])
    return local_rows(0.5 * (softmax_cross_entropy(logits, targets) + softmax_cross_entropy(logits.T, targets)))


def uniqueness_penalty(u: jax.Array, r: jax.Array, *, kind: str = "orthogonality",
                       club_mu=None, club_logvar=None) -> jax.Array:
    """Upper-bound surrogate of ``I(U^m; R)``, minimised to separate unique from shared.

    Args:
      u: ``[B, d]`` unique component ``U^m``.
      r: ``[B, d]`` shared component ``R``.
      kind: ``"orthogonality"`` (default): ``cos²(u_i, r_i)``, cheap and parameter-free;
        ``"club"``: the CLUB bound ``log q(r_i|u_i) − E_j log q(r_j|u_i)`` (``j`` over the global
        batch) with a Gaussian variational network ``q(r|u) = N(club_mu, e^{club_logvar})``
        evaluated on ``u`` (train it with :func:`club_fit_loss`) [INF: the note names neither].
      club_mu: ``[B, d]`` mean of ``q(r|u_i)`` (``"club"`` only).
      club_logvar: ``[B, d]`` log-variance of ``q(r|u_i)`` (``"club"`` only).

    Returns:
      ``[B]`` per-example penalty.
    """
    check_choice("kind", kind, PENALTIES)
    if u.shape != r.shape or u.ndim != 2:
        raise ValueError(f"u {u.shape} and r {r.shape} must be [B, d] of the same shape.")
    if kind == "orthogonality":
        return jnp.sum(l2_normalize(u) * l2_normalize(r), axis=-1) ** 2
    if club_mu is None or club_logvar is None:
        raise ValueError("kind='club' needs club_mu and club_logvar: the outputs of the "
                         "variational network q(r|u) on u.")
    precision = jnp.exp(-club_logvar)
    # E_j (r_j − μ_i)² = Var_batch(r) + (mean_batch(r) − μ_i)²; the log-variance terms cancel.
    # (In this order the gradients on one device are bit-identical to those of jnp.mean and jnp.var.)
    offset = batch_mean(r) - club_mu
    positive = (r - club_mu) ** 2 * precision
    negative = (batch_mean(jnp.square(r - batch_mean(r))) + offset ** 2) * precision
    return 0.5 * jnp.sum(negative - positive, axis=-1)


def club_fit_loss(r: jax.Array, club_mu: jax.Array, club_logvar: jax.Array) -> jax.Array:
    """Gaussian negative log-likelihood ``−log q(r_i|u_i)`` (up to a constant) that trains CLUB's
    variational network; pass gradient-stopped ``u`` and ``r`` to it so only the network learns."""
    return 0.5 * jnp.sum((r - club_mu) ** 2 * jnp.exp(-club_logvar) + club_logvar, axis=-1)


def cd_variational_loss(u: jax.Array, r: jax.Array, mu_u: jax.Array, logvar_u: jax.Array,
                        mu_r: jax.Array, logvar_r: jax.Array, *, beta_kl: float = 1.0,
                        penalty: str = "orthogonality", club_mu=None, club_logvar=None
                        ) -> jax.Array:
    """``L_Var(U^m, R) = β_kl [KL(q_U ‖ N(0,I)) + KL(q_R ‖ N(0,I))] + penalty(U^m, R)``.

    Args:
      u: ``[B, d]`` sample of ``U^m``.
      r: ``[B, d]`` sample of ``R``.
      mu_u: mean of ``q(U|M^m)``.
      logvar_u: log-variance of ``q(U|M^m)``.
      mu_r: mean of ``q(R|M^m)``.
      logvar_r: log-variance of ``q(R|M^m)``.
      beta_kl: weight of the KL terms [INF, default 1].
      penalty: see :func:`uniqueness_penalty` (``kind``).
      club_mu: see :func:`uniqueness_penalty`.
      club_logvar: see :func:`uniqueness_penalty`.

    Returns:
      ``[B]`` per-example loss.
    """
    kl = gaussian_kl_to_standard(mu_u, logvar_u) + gaussian_kl_to_standard(mu_r, logvar_r)
    return beta_kl * kl + uniqueness_penalty(u, r, kind=penalty, club_mu=club_mu,
                                             club_logvar=club_logvar)


def synergy_features(n1: jax.Array, n2: jax.Array) -> jax.Array:
    """Input of the synergy fusion MLP: ``[N¹; N²; N¹⊙N²; |N¹ − N²|]`` [INF].

    The product makes XOR-like interactions linearly separable (the note's stated purpose; the
    paper's Appendix B fusion could not be read).

    Args:
      n1: ``[B, d]`` residual ``N^(1)``.
      n2: ``[B, d]`` residual ``N^(2)``.

    Returns:
      ``[B, 4d]`` features.
    """
    if n1.shape != n2.shape:
        raise ValueError(f"n1 {n1.shape} and n2 {n2.shape} must have the same shape.")
    return jnp.concatenate([n1, n2, n1 * n2, jnp.abs(n1 - n2)], axis=-1)


def gated_aggregate(component_logits: Sequence[jax.Array], gate_logits: jax.Array, *,
                    mix: str = "logits") -> jax.Array:
    """``Ŷ = Σ_c g_c(x) ŷ_c`` over the components ``(R, U¹, U², S)``, ``g = softmax(gate_logits)``.

    Args:
      component_logits: one ``[B, K]`` prediction ``ŷ_c = W_c c`` per component.
      gate_logits: ``[B, C]`` gating-network outputs (``C = len(component_logits)``).
      mix: ``"logits"`` mixes the component logits as the note writes (default); ``"probs"``
        returns the log of the mixture of component softmaxes [INF].

    Returns:
      ``[B, K]`` fused logits (log-probabilities for ``"probs"``).
    """
    check_choice("mix", mix, MIXES)
    if gate_logits.shape != (component_logits[0].shape[0], len(component_logits)):
        raise ValueError(f"gate_logits {gate_logits.shape} must be [B, C] with C = "
                         f"{len(component_logits)} components.")
    gate = jax.nn.softmax(gate_logits, axis=-1)
    if mix == "probs":
        return gated_log_probs(component_logits, gate)
    return jnp.einsum("cbk,bc->bk", jnp.stack(component_logits), gate)


def stage_term_weights(stage: int, *, alpha: float = 1.0, beta: float = 0.1, gamma: float = 0.1,
                       gate_in_stage2: bool = True) -> dict[str, float]:
    """Weights of the named loss terms in each training stage.

    Terms: ``task_m`` (``Σ_m L_t(M^m)``), ``var_mn`` (``Σ_m L_Var(M^m, N^m)``),
    ``task_components`` (``Σ_c L_t(c)``, c ∈ R, U¹, U², S), ``var_ur`` (``Σ_m L_Var(U^m, R)``),
    ``align_r`` (``L_Align(R)``) and ``task_fused`` (``L_t(Ŷ)``). Following the note,
    ``L_1 = task_m + var_mn``, ``L_2 = task_components + var_ur + α·align_r`` and
    ``L_3 = task_fused + β L_1 + γ L_2``. Stage 1 trains the encoders and ID on ``L_1``; stage 2
    freezes them and trains CD, synergy, heads and gate on ``L_2``; stage 3 fine-tunes all on
    ``L_3``. α, β, γ are unknown [INF defaults 1, 0.1, 0.1].

    Args:
      stage: 1, 2 or 3.
      alpha: weight of the alignment in ``L_2``.
      beta: weight of ``L_1`` in ``L_3``.
      gamma: weight of ``L_2`` in ``L_3``.
      gate_in_stage2: add ``task_fused`` to stage 2 so the gate trains before stage 3 [INF,
        default True].

    Returns:
      Term name -> weight (absent terms have weight 0).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; DMIL has stages 1, 2 and 3.")
    l1 = {"task_m": 1.0, "var_mn": 1.0}
    l2 = {"task_components": 1.0, "var_ur": 1.0, "align_r": alpha}
    if stage == 1:
        return l1
    if stage == 2:
        return {**l2, "task_fused": 1.0 if gate_in_stage2 else 0.0}
    return {"task_fused": 1.0, **{k: beta * v for k, v in l1.items()},
            **{k: gamma * v for k, v in l2.items()}}
