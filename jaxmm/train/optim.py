"""Optimisers with per-run (vmappable) learning rate and weight decay, schedules and clipping.

Schedules of :class:`~jaxmm.train.config.OptimizerConfig`: ``step`` (PyTorch ``StepLR``),
``cosine`` (linear warm-up, cosine decay to 0), ``cosine_restarts`` (SynIB's ``cosanneal``:
constant warm-up, then ``CosineAnnealingWarmRestarts`` over steps) scale every update by a factor
of the step count; ``plateau`` (PyTorch ``ReduceLROnPlateau`` on the validation loss) is stepped by
the loop once per epoch (:func:`plateau_step`) and multiplies each run's injected learning rate
(:func:`reduce_learning_rate`), so its state is part of the checkpointed train state.
"""
from __future__ import annotations

import dataclasses

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmm.train.config import OptimizerConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


def cosine_restarts(warmup_steps: int, first_cycle: int, mult: int):
    """SynIB's ``cosanneal`` factor ``count -> lr multiplier`` (its ``WarmupScheduler``).

    The base rate while ``count < warmup_steps``; from then on PyTorch
    ``CosineAnnealingWarmRestarts(T_0=first_cycle, T_mult=mult, eta_min=0)`` stepped with the
    global step count: cycle ``n`` starts at step ``T_0 (mult^n - 1) / (mult - 1)`` (``T_0 n`` for
    ``mult = 1``), lasts ``T_0 mult^n`` steps, and the factor is ``(1 + cos(pi t / T_n)) / 2``
    at step ``t`` of it. Cycle starts are exact integers (PyTorch finds the cycle with a float
    logarithm, which can misplace a start, e.g. step 242 of ``T_0=2, T_mult=3``; not for SynIB's
    ``T_0=4, T_mult=2`` within 2^31 steps).
    """
    if mult == 1:
        def cycle(count):
            return (count // first_cycle) * first_cycle, jnp.full_like(count, first_cycle)
    else:
        starts, n = [], 0
        while (start := first_cycle * (mult ** n - 1) // (mult - 1)) < 2 ** 31 - 1:
            starts.append(start)
            n += 1
        starts = np.asarray(starts, np.int64)
        lengths = np.asarray([first_cycle * mult ** i for i in range(len(starts))], np.float64)

        def cycle(count):
            index = jnp.sum(count[..., None] >= jnp.asarray(starts[1:], jnp.int32), axis=-1)
            return jnp.asarray(starts, jnp.int32)[index], jnp.asarray(lengths, jnp.float32)[index]

    def factor(count):
        count = jnp.asarray(count, jnp.int32)
        start, length = cycle(count)
        restart = 0.5 * (1.0 + jnp.cos(math.pi * (count - start).astype(jnp.float32) / length))
        return jnp.where(count < warmup_steps, 1.0, restart)

    return factor


def epoch_schedule(cfg: OptimizerConfig, steps_per_epoch: int | None):
    """The factor ``count -> lr multiplier`` of the configured schedule; ``None`` for ``constant``
    and ``plateau`` (stepped by the loop, :func:`plateau_step`).

    Optimiser step ``count`` (0-based) lies in epoch ``count // steps_per_epoch``; the ``step``
    schedule (PyTorch ``StepLR``) multiplies the base rate by ``gamma ** (epoch // step_size)``:
    ``optax.exponential_decay`` with a staircase every ``step_size`` epochs. ``cosine`` is
    ``optax.warmup_cosine_decay_schedule(0, 1, warmup_steps, total_steps, 0)``: ``count /
    warmup_steps`` during the warm-up, then ``(1 + cos(pi (count - warmup_steps) / (total_steps -
    warmup_steps))) / 2``, 0 from ``total_steps`` on. ``cosine_restarts``: :func:`cosine_restarts`.

    Raises:
      ValueError: a ``step`` schedule without a positive ``steps_per_epoch``, or a ``cosine`` one
        without ``total_steps``.
    """
    if cfg.schedule in ("constant", "plateau"):
        return None
    if cfg.schedule == "cosine_restarts":
        return cosine_restarts(cfg.warmup_steps, cfg.restart_steps, cfg.restart_mult)
    if cfg.schedule == "cosine":
        if cfg.total_steps <= cfg.warmup_steps:
            raise ValueError(f"optimizer.schedule='cosine' decays to 0 at optimizer.total_steps, which must exceed "
                             f"optimizer.warmup_steps={cfg.warmup_steps}; got {cfg.total_steps} (fit fills in "
                             "train.epochs x batches per epoch when it is 0)")
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, cfg.warmup_steps, cfg.total_steps, 0.0)
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"optimizer.schedule={cfg.schedule!r} decays per epoch: pass steps_per_epoch "
                         f"(batches per epoch), got {steps_per_epoch!r}")
    return optax.exponential_decay(1.0, transition_steps=cfg.step_size * steps_per_epoch, decay_rate=cfg.gamma,
                                   staircase=True)


def with_total_steps(cfg, epochs: int, steps_per_epoch: int):
    """``cfg`` with a ``cosine`` schedule's missing ``total_steps`` set to ``epochs × steps_per_epoch``
    (what :func:`~jaxmm.train.loop.fit` trains); any other optimiser or schedule as given."""
    if isinstance(cfg, OptimizerConfig) and cfg.schedule == "cosine" and not cfg.total_steps:
        return dataclasses.replace(cfg, total_steps=epochs * steps_per_epoch)
    return cfg


def make_optimizer(cfg: OptimizerConfig, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """An optax optimiser whose ``learning_rate``/``weight_decay`` live in its state.

    ``optax.inject_hyperparams`` puts both in the optimiser state, so a vmapped
    ``init`` with per-run values trains a grid of learning rates in one program.
    A per-epoch schedule (:func:`epoch_schedule`) scales the final update, so the
    rate of a step is the run's base rate times the schedule factor; for SGD with
    momentum this is PyTorch's ``StepLR`` (the rate multiplies the momentum buffer).
    Call ``init`` through :func:`init_optimizer`. With ``clip_norm``, the gradient is first
    clipped to that global norm (``optax.clip_by_global_norm``: PyTorch ``clip_grad_norm_`` before
    ``optimizer.step()``, so before the L2 decay term is added).

    Args:
      cfg: the optimiser configuration.
      steps_per_epoch: optimiser steps per epoch, needed by per-epoch schedules.

    Raises:
      ValueError: unknown optimiser, or a schedule without the step counts it needs.
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
        if cfg.clip_norm:
            core = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), core)
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


def plateau_step(best: np.ndarray, bad_epochs: np.ndarray, loss: np.ndarray, *, patience: int,
                 threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of PyTorch ``ReduceLROnPlateau`` (mode ``min``, ``rel`` threshold, no cooldown), per run.

    A loss counts as better when ``loss < best * (1 - threshold)``; after more than ``patience``
    epochs without a better one the rate decays and the count restarts. A NaN loss is never better.

    Args:
      best: ``[R]`` best validation loss so far (``inf`` before the first epoch).
      bad_epochs: ``[R]`` epochs since the last better loss.
      loss: ``[R]`` this epoch's validation loss.

    Returns:
      ``(best, bad_epochs, reduce)``: the new state and ``[R]`` bools, the runs whose rate decays now.
    """
    loss = np.asarray(loss, np.float64)
    better = loss < np.asarray(best, np.float64) * (1.0 - threshold)
    best = np.where(better, loss, best)
    bad_epochs = np.where(better, 0, np.asarray(bad_epochs) + 1)
    reduce = bad_epochs > patience
    return best.astype(np.float32), np.where(reduce, 0, bad_epochs).astype(np.int32), reduce


def reduce_learning_rate(opt_state, reduce, factor: float, eps: float = 1e-8):
    """``opt_state`` of :func:`make_optimizer` runs (``[R]`` hyper-parameters) with the learning rate of
    the runs where ``reduce`` is set multiplied by ``factor`` (``ReduceLROnPlateau._reduce_lr``: kept
    when the decrease would be at most ``eps``)."""
    hp = dict(opt_state.hyperparams)
    lr = hp["learning_rate"]
    lower = lr * factor
    hp["learning_rate"] = jnp.where(jnp.asarray(reduce) & (lr - lower > eps), lower, lr)
    return opt_state._replace(hyperparams=hp)
