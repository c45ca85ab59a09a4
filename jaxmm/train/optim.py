"""Optimisers with per-run (vmappable) learning rate and weight decay, and per-epoch schedules."""
from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxmm.train.config import OptimizerConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


def epoch_schedule(cfg: OptimizerConfig, steps_per_epoch: int | None):
    """The factor ``count -> lr multiplier`` of the configured schedule, or ``None`` when constant.

    Optimiser step ``count`` (0-based) lies in epoch ``count // steps_per_epoch``;
    the ``step`` schedule multiplies the base rate by ``gamma ** (epoch // step_size)``.

    Raises:
      ValueError: a per-epoch schedule without a positive ``steps_per_epoch``.
    """
    if cfg.schedule == "constant":
        return None
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"optimizer.schedule={cfg.schedule!r} decays per epoch: pass steps_per_epoch "
                         f"(batches per epoch), got {steps_per_epoch!r}")

    def factor(count):
        decays = (count // steps_per_epoch) // cfg.step_size
        return jnp.asarray(cfg.gamma, jnp.float32) ** decays.astype(jnp.float32)

    return factor


def make_optimizer(cfg: OptimizerConfig, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """An optax optimiser whose ``learning_rate``/``weight_decay`` live in its state.

    ``optax.inject_hyperparams`` puts both in the optimiser state, so a vmapped
    ``init`` with per-run values trains a grid of learning rates in one program.
    A per-epoch schedule (:func:`epoch_schedule`) scales the final update, so the
    rate of a step is the run's base rate times the schedule factor; for SGD with
    momentum this is PyTorch's ``StepLR`` (the rate multiplies the momentum buffer).
    Call ``init`` through :func:`init_optimizer`.

    Args:
      cfg: the optimiser configuration.
      steps_per_epoch: optimiser steps per epoch, needed by per-epoch schedules.

    Raises:
      ValueError: unknown optimiser, or a per-epoch schedule without ``steps_per_epoch``.
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}")
    factor = epoch_schedule(cfg, steps_per_epoch)

    def build(learning_rate, weight_decay):
        if cfg.name == "adamw":
            core = optax.adamw(learning_rate, weight_decay=weight_decay)
        else:
            base = optax.adam(learning_rate) if cfg.name == "adam" else optax.sgd(learning_rate, momentum=cfg.momentum)
            core = optax.chain(optax.add_decayed_weights(weight_decay), base)
        return core if factor is None else optax.chain(core, optax.scale_by_schedule(factor))

    return optax.inject_hyperparams(build)(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)


def init_optimizer(optimizer, params, lr, weight_decay):
    """``optimizer.init(params)`` with this run's learning rate and weight decay."""
    state = optimizer.init(params)
    hp = dict(state.hyperparams)
    hp["learning_rate"] = lr
    hp["weight_decay"] = weight_decay
    return state._replace(hyperparams=hp)
