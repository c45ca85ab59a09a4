"""Optimisers with per-run (vmappable) learning rate and weight decay, and per-epoch schedules."""
from __future__ import annotations

import jax
import optax

from jaxmm.train.config import OptimizerConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


def epoch_schedule(cfg: OptimizerConfig, steps_per_epoch: int | None):
    """The factor ``count -> lr multiplier`` of the configured schedule, or ``None`` when constant.

    Optimiser step ``count`` (0-based) lies in epoch ``count // steps_per_epoch``; the ``step``
    schedule (PyTorch ``StepLR``) multiplies the base rate by ``gamma ** (epoch // step_size)``:
    ``optax.exponential_decay`` with a staircase every ``step_size`` epochs.

    Raises:
      ValueError: a per-epoch schedule without a positive ``steps_per_epoch``.
    """
    if cfg.schedule == "constant":
        return None
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"optimizer.schedule={cfg.schedule!r} decays per epoch: pass steps_per_epoch "
                         f"(batches per epoch), got {steps_per_epoch!r}")
    return optax.exponential_decay(1.0, transition_steps=cfg.step_size * steps_per_epoch, decay_rate=cfg.gamma,
                                   staircase=True)


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
    """``optimizer.init(params)`` of a :func:`make_optimizer` optimiser with this run's rate and decay."""
    state = optimizer.init(params)
    hp = dict(state.hyperparams)
    hp["learning_rate"] = lr
    hp["weight_decay"] = weight_decay
    return state._replace(hyperparams=hp)


def _is_kept(node) -> bool:
    return isinstance(node, (optax.ScaleByScheduleState, optax.InjectStatefulHyperparamsState))


def fresh_optimizer_state(optimizer: optax.GradientTransformation, state, params):
    """The state of a freshly created optimiser under the same learning-rate schedule.

    Moments and bias-correction counts restart (``optimizer.init``); the clocks of
    learning-rate schedules (``ScaleByScheduleState``) and the hyper-parameters injected by
    ``optax.inject_hyperparams`` (a run's own learning rate) carry over. This is what a new
    PyTorch optimiser per phase under one outer ``StepLR`` does (ReconBoost's stages).
    """
    fresh = optimizer.init(params)

    def keep(new, old):
        if isinstance(new, optax.ScaleByScheduleState):
            return old
        if isinstance(new, optax.InjectStatefulHyperparamsState):
            inner = jax.tree.map(keep, new.inner_state, old.inner_state, is_leaf=_is_kept)
            return new._replace(count=old.count, hyperparams=old.hyperparams,
                                hyperparams_states=old.hyperparams_states, inner_state=inner)
        return new

    return jax.tree.map(keep, fresh, state, is_leaf=_is_kept)
