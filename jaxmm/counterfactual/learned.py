"""Learned masks (SynIB Eq. 5): the sparsest corruption that collapses a unimodal head.

Solved per batch by a short inner Adam optimisation over mask logits with the
model held fixed; jit-friendly (``lax.scan``, fixed step count, early stop by
freezing the logits once the gate stops moving).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxmm.batch_reduce import batch_sum, device_count
from jaxmm.counterfactual.masks import corrupt


@dataclasses.dataclass(frozen=True)
class LearnedMaskConfig:
    """Inner problem ``min_ℓ −CE(h(g(x, σ(ℓ/τ))), y) + λ_sp·mean σ(ℓ/τ)``.

    Defaults follow the Spurious-XOR protocol of the SynIB paper (App. F.1); the PID-XOR one
    is ``steps=20, lr=0.1, init_logit=-1.0, final_lr_fraction=0.1, clip=1.0,
    tol=1e-4, patience=10``.

    Attributes:
      steps: inner Adam steps.
      lr: inner learning rate.
      sparsity: ``λ_sp``, the price of corrupting a coordinate.
      init_logit: initial logit of the destroy gate (−4: almost nothing corrupted).
      tau: relaxation temperature.
      final_lr_fraction: cosine decay of the inner lr to this fraction (1: constant).
      clip: global-norm clip of the inner gradient (0: none).
      tol: early stop once the mean ``|Δgate|`` stays below ``tol`` for ``patience`` steps (0: never).
      patience: see ``tol``.
    """

    steps: int = 50
    lr: float = 3.0
    sparsity: float = 0.03
    init_logit: float = -4.0
    tau: float = 1.0
    final_lr_fraction: float = 1.0
    clip: float = 0.0
    tol: float = 0.0
    patience: int = 10

    def __post_init__(self):
        if self.steps < 1 or self.lr <= 0 or self.tau <= 0:
            raise ValueError(f"learned mask needs steps >= 1, lr > 0, tau > 0; got {self}")


def _mean_all(x: jax.Array) -> jax.Array:
    """Mean of every element of ``x`` (``[B, ...]``) over the global batch."""
    return batch_sum(x, axis=tuple(range(x.ndim))) / (x.size * device_count())


def _clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` of one ``[B, ...]`` array, its norm taken over the global batch."""
    def update_fn(updates, state, params=None):
        del params
        norm = jnp.sqrt(batch_sum(jnp.square(updates), axis=tuple(range(updates.ndim))))
        return jnp.where(norm < max_norm, updates, (updates / norm.astype(updates.dtype)) * max_norm), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _inner_optimizer(cfg: LearnedMaskConfig) -> optax.GradientTransformation:
    lr = cfg.lr if cfg.final_lr_fraction == 1.0 else optax.cosine_decay_schedule(cfg.lr, cfg.steps, cfg.final_lr_fraction)
    adam = optax.adam(lr)
    return optax.chain(_clip_by_global_norm(cfg.clip), adam) if cfg.clip > 0 else adam


def learn_unimodal_mask(unimodal_loss: Callable[[jax.Array], jax.Array], x: jax.Array, fill: jax.Array,
                        cfg: LearnedMaskConfig, sparsity=None) -> jax.Array:
    """Hard destroy-gate marking the coordinates the unimodal head relies on.

    The objective's means, the gradient clipping and the early stop run over the global batch.

    Args:
      unimodal_loss: ``x_corrupted -> [B]`` per-example CE of the unimodal head
        (the model is treated as constant: only the mask logits are optimised).
      x: ``[B, ...]`` clean values of the modality.
      fill: ``[B, ...]`` replacement values ε.
      cfg: inner-problem settings.
      sparsity: optional traced override of ``cfg.sparsity`` (for hyper-parameter grids).

    Returns:
      ``[B, ...]`` float 0/1 gate (1 = unimodally important), gradient-stopped.
      SynIB corrupts its complement.
    """
    x, fill = jax.lax.stop_gradient(x), jax.lax.stop_gradient(fill)
    lam_sp = cfg.sparsity if sparsity is None else sparsity
    opt = _inner_optimizer(cfg)

    def objective(logits):
        gate = jax.nn.sigmoid(logits / cfg.tau)
        return -_mean_all(unimodal_loss(corrupt(x, gate, fill))) + lam_sp * _mean_all(gate)

    def step(carry, _):
        logits, opt_state, calm, done = carry
        grads = jax.grad(objective)(logits)
        updates, new_opt_state = opt.update(grads, opt_state, logits)
        new_logits = optax.apply_updates(logits, updates)
        if cfg.tol <= 0:  # no early stop: nothing else to compute
            return (new_logits, new_opt_state, calm, done), None
        change = _mean_all(jnp.abs(jax.nn.sigmoid(new_logits / cfg.tau) - jax.nn.sigmoid(logits / cfg.tau)))
        new_logits = jnp.where(done, logits, new_logits)
        calm = jnp.where(change < cfg.tol, calm + 1, 0)
        done = done | ((cfg.tol > 0) & (calm >= cfg.patience))
        return (new_logits, new_opt_state, calm, done), None

    logits0 = jnp.full_like(x, cfg.init_logit)  # varies per device like x: the scan carry keeps its type
    carry = (logits0, opt.init(logits0), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    (logits, *_), _ = jax.lax.scan(step, carry, None, length=cfg.steps)
    return jax.lax.stop_gradient((jax.nn.sigmoid(logits / cfg.tau) > 0.5).astype(x.dtype))
