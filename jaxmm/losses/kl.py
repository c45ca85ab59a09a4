"""Per-example KL divergences: categorical, Bernoulli, Gaussian, and KL to a reference.

Every function reduces over the distribution axis only and returns one value
per example; all are non-negative up to float error.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxmm._checks import check_choice

REFERENCES = ("uniform", "unimodal", "gaussian")


def categorical_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """``KL(softmax(p_logits) ‖ softmax(q_logits))`` over the last axis.

    :func:`optax.losses.kl_divergence_with_log_targets` of the log-softmaxes.
    """
    return optax.losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(q_logits, axis=-1), jax.nn.log_softmax(p_logits, axis=-1))


def categorical_kl_to_uniform(logits: jax.Array) -> jax.Array:
    """``KL(softmax(logits) ‖ U_K) = Σ_k q_k log q_k + log K`` over the last axis."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.exp(log_q) * log_q, axis=-1) + jnp.log(logits.shape[-1])


def bernoulli_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """``KL(Bern(σ(p_logits)) ‖ Bern(σ(q_logits)))`` elementwise."""
    p = jax.nn.sigmoid(p_logits)
    log_p, log_1mp = jax.nn.log_sigmoid(p_logits), jax.nn.log_sigmoid(-p_logits)
    log_q, log_1mq = jax.nn.log_sigmoid(q_logits), jax.nn.log_sigmoid(-q_logits)
    return p * (log_p - log_q) + (1 - p) * (log_1mp - log_1mq)


def bernoulli_kl_to_half(logits: jax.Array) -> jax.Array:
    """``KL(Bern(σ(f)) ‖ Bern(½)) = p log 2p + (1−p) log 2(1−p)`` elementwise."""
    p = jax.nn.sigmoid(logits)
    return p * jax.nn.log_sigmoid(logits) + (1 - p) * jax.nn.log_sigmoid(-logits) + jnp.log(2.0)


def gaussian_kl(mu_p, logvar_p, mu_q, logvar_q) -> jax.Array:
    """``KL(N(μ_p, diag e^{logvar_p}) ‖ N(μ_q, diag e^{logvar_q}))`` summed over the last axis."""
    var_ratio = jnp.exp(logvar_p - logvar_q)
    mean_term = (mu_p - mu_q) ** 2 * jnp.exp(-logvar_q)
    return 0.5 * jnp.sum(var_ratio + mean_term - 1.0 - (logvar_p - logvar_q), axis=-1)


def gaussian_kl_to_standard(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """``KL(N(μ, diag e^{logvar}) ‖ N(0, I)) = ½ Σ (e^{logvar} + μ² − 1 − logvar)``."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)


def kl_to_reference(logits: jax.Array, reference: str = "uniform", *, reference_logits=None,
                    logvar=None) -> jax.Array:
    """KL of a prediction to a reference distribution ``r`` (SynIB App. C).

    Args:
      logits: ``[B, K]`` class logits, or ``[B, 1]`` / ``[B]`` for a binary head.
      reference: ``"uniform"`` (categorical uniform, or Bern(½) for one logit),
        ``"unimodal"`` (``KL(softmax(reference_logits) ‖ softmax(logits))``, the
        anchor form of SynIB-U; pass ``reference_logits``), or ``"gaussian"``
        (``KL(N(logits, e^{logvar}) ‖ N(0, I))``; pass ``logvar``).

    Returns:
      ``[B]`` per-example KL.

    Raises:
      ValueError: for an unknown ``reference``, or one whose extra input is missing.
    """
    check_choice("reference", reference, REFERENCES)
    if reference == "uniform":
        if logits.shape[-1] == 1 or logits.ndim == 1:
            return bernoulli_kl_to_half(logits.reshape(logits.shape[0], -1)).sum(-1)
        return categorical_kl_to_uniform(logits)
    if reference == "unimodal":
        if reference_logits is None:
            raise ValueError("reference='unimodal' needs reference_logits (the anchor prediction).")
        if logits.shape[-1] == 1:
            return bernoulli_kl(reference_logits, logits).sum(-1)
        return categorical_kl(reference_logits, logits)
    if logvar is None:  # "gaussian"
        raise ValueError("reference='gaussian' needs logvar (a log-variance per logit).")
    return gaussian_kl_to_standard(logits, logvar)
