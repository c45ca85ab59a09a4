"""Tests for jaxmm.train.optim: schedules, clipping and ReduceLROnPlateau against PyTorch's algorithms,
per-run rates, errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.train.config import OptimizerConfig
from jaxmm.train.optim import (
    cosine_restarts, epoch_schedule, init_optimizer, make_optimizer, plateau_step, reduce_learning_rate)

STEPS_PER_EPOCH = 3


def _updates(cfg, steps, lr=None, weight_decay=None, grad=1.0, param=0.0):
    """The updates of ``steps`` optimiser steps on one scalar parameter with a constant gradient."""
    opt = make_optimizer(cfg, STEPS_PER_EPOCH)
    params = jnp.asarray(param)
    state = init_optimizer(opt, params, cfg.lr if lr is None else lr,
                           cfg.weight_decay if weight_decay is None else weight_decay)
    out = []
    for _ in range(steps):
        update, state = opt.update(jnp.asarray(grad), state, params)
        out.append(float(update))
    return np.asarray(out)


def test_step_schedule_factor_at_epoch_boundaries():
    factor = epoch_schedule(OptimizerConfig(schedule="step", step_size=2, gamma=0.1), STEPS_PER_EPOCH)
    # steps 0-5 are epochs 0-1 (x1), steps 6-11 epochs 2-3 (x0.1), step 12 epoch 4 (x0.01)
    got = [float(factor(jnp.asarray(c))) for c in (0, 5, 6, 11, 12)]
    np.testing.assert_allclose(got, [1.0, 1.0, 0.1, 0.1, 0.01], rtol=1e-6)
    assert epoch_schedule(OptimizerConfig(), None) is None


def test_plain_sgd_steps_use_the_decayed_rate():
    cfg = OptimizerConfig("sgd", lr=0.5, momentum=0.0, schedule="step", step_size=2, gamma=0.1)
    expected = -0.5 * np.array([1.0] * 6 + [0.1] * 3)  # 3 steps per epoch, decay after epoch 2
    np.testing.assert_allclose(_updates(cfg, 9), expected, rtol=1e-6)


SGD_CFG = OptimizerConfig("sgd", lr=0.1, weight_decay=1e-2, momentum=0.9, schedule="step", step_size=1, gamma=0.5)
TARGET = np.array([1.0, -2.0, 0.5], np.float32)


def _jaxmm_sgd_on_quadratic(cfg, epochs):
    """Parameters after ``epochs`` epochs of jaxmm's SGD on ``0.5 ||w - TARGET||²`` from zero."""
    opt = make_optimizer(cfg, STEPS_PER_EPOCH)
    params = jnp.zeros(3)
    state = init_optimizer(opt, params, cfg.lr, cfg.weight_decay)
    for _ in range(epochs * STEPS_PER_EPOCH):
        update, state = opt.update(params - TARGET, state, params)
        params = params + update
    return np.asarray(params)


def test_sgd_momentum_weight_decay_and_steplr_match_the_pytorch_algorithm_in_numpy():
    """PyTorch's documented SGD: g += wd·w; v = μ·v + g (v = g at the first step); w -= lr_epoch·v."""
    cfg = SGD_CFG
    w, v = np.zeros(3), None
    for epoch in range(3):
        lr = cfg.lr * cfg.gamma ** (epoch // cfg.step_size)
        for _ in range(STEPS_PER_EPOCH):
            g = (w - TARGET) + cfg.weight_decay * w
            v = g if v is None else cfg.momentum * v + g
            w = w - lr * v
    np.testing.assert_allclose(_jaxmm_sgd_on_quadratic(cfg, 3), w, rtol=1e-5, atol=1e-6)


def test_sgd_momentum_weight_decay_and_steplr_match_pytorch():
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs the bench extra")
    cfg = SGD_CFG
    w = torch.zeros(3, requires_grad=True)
    opt_t = torch.optim.SGD([w], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt_t, step_size=cfg.step_size, gamma=cfg.gamma)
    for _epoch in range(3):
        for _ in range(STEPS_PER_EPOCH):
            opt_t.zero_grad()
            (0.5 * ((w - torch.from_numpy(TARGET)) ** 2).sum()).backward()
            opt_t.step()
        sched.step()
    np.testing.assert_allclose(_jaxmm_sgd_on_quadratic(cfg, 3), w.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_per_run_learning_rates_are_vmappable_and_scheduled():
    cfg = OptimizerConfig("sgd", lr=1.0, momentum=0.0, schedule="step", step_size=1, gamma=0.5)
    opt = make_optimizer(cfg, STEPS_PER_EPOCH)
    params = jnp.zeros(())

    def run(lr):
        state = init_optimizer(opt, params, lr, 0.0)
        updates = []
        for _ in range(2 * STEPS_PER_EPOCH):
            update, state = opt.update(jnp.ones(()), state, params)
            updates.append(update)
        return jnp.stack(updates)

    got = jax.vmap(run)(jnp.array([0.1, 0.3]))
    epoch_factor = np.repeat([1.0, 0.5], STEPS_PER_EPOCH)
    np.testing.assert_allclose(got, -np.outer([0.1, 0.3], epoch_factor), rtol=1e-6)


def test_constant_schedule_keeps_the_plain_optimizer_state():
    cfg = OptimizerConfig("adam", lr=1e-2)
    np.testing.assert_allclose(_updates(cfg, 4), -1e-2, rtol=1e-4)  # Adam's first steps on a constant gradient
    state = make_optimizer(cfg).init(jnp.zeros(()))
    assert "ScaleBySchedule" not in repr(state)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="schedule"):
        OptimizerConfig(schedule="linear")
    with pytest.raises(ValueError, match="step_size"):
        OptimizerConfig(schedule="step", step_size=0)
    with pytest.raises(ValueError, match="gamma"):
        OptimizerConfig(gamma=0.0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_optimizer(OptimizerConfig(schedule="step"))
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(OptimizerConfig(name="lion"))


def test_fresh_optimizer_state_restarts_moments_and_keeps_the_schedule_clock_and_rate():
    from jaxmm.train.optim import fresh_optimizer_state
    cfg = OptimizerConfig("sgd", 0.1, 0.0, momentum=0.9, schedule="step", step_size=1, gamma=0.5)
    opt = make_optimizer(cfg, STEPS_PER_EPOCH)
    params = jnp.asarray(0.0)
    state = init_optimizer(opt, params, 0.3, 0.0)  # this run's own rate
    for _ in range(4):
        _, state = opt.update(jnp.asarray(1.0), state, params)
    fresh = fresh_optimizer_state(opt, state, params)
    assert float(fresh.hyperparams["learning_rate"]) == pytest.approx(0.3)
    update, _ = opt.update(jnp.asarray(1.0), fresh, params)
    # no momentum left: the update is -lr * g * gamma ** (epoch of step 4 = 1) = -0.3 * 0.5
    assert float(update) == pytest.approx(-0.15)
    continued, _ = opt.update(jnp.asarray(1.0), state, params)
    assert abs(float(continued)) > 0.2  # without the reset the momentum buffer adds to it


def _torch_clip(g, max_norm):
    """PyTorch ``clip_grad_norm_``: ``g * min(1, max_norm / (||g|| + 1e-6))`` over all gradients."""
    norm = np.sqrt(sum(float(np.sum(x.astype(np.float64) ** 2)) for x in g.values()))
    return {k: x * min(1.0, max_norm / (norm + 1e-6)) for k, x in g.items()}


@pytest.mark.parametrize("scale", [10.0, 0.01])  # clipped, and below the norm (untouched)
def test_clip_by_global_norm_before_the_l2_decay_matches_pytorch_in_numpy(scale):
    cfg = OptimizerConfig("sgd", lr=0.5, weight_decay=0.1, momentum=0.0, clip_norm=0.8)
    opt = make_optimizer(cfg)
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32)}
    grads = {k: (scale * rng.normal(size=v.shape)).astype(np.float32) for k, v in params.items()}
    state = init_optimizer(opt, params, cfg.lr, cfg.weight_decay)
    update, _ = opt.update(grads, state, params)
    clipped = _torch_clip(grads, 0.8)  # torch: clip, then SGD adds wd * w inside step()
    for k in params:
        np.testing.assert_allclose(update[k], -0.5 * (clipped[k] + 0.1 * params[k]), rtol=1e-5, atol=1e-7)


def test_cosine_warmup_and_decay_follow_the_formula():
    cfg = OptimizerConfig("sgd", lr=0.2, momentum=0.0, schedule="cosine", warmup_steps=3, total_steps=10)
    warm, total = 3, 10
    expected = [c / warm if c < warm else 0.5 * (1 + math.cos(math.pi * min(c - warm, total - warm) / (total - warm)))
                for c in range(13)]
    np.testing.assert_allclose(_updates(cfg, 13), -0.2 * np.asarray(expected), rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="total_steps"):
        make_optimizer(OptimizerConfig(schedule="cosine", warmup_steps=5))


def _torch_warm_restarts(count, warmup, t0, mult):
    """SynIB's WarmupScheduler + PyTorch ``CosineAnnealingWarmRestarts.step(epoch=count)``, cycles found by
    walking them (PyTorch takes a float ``log``, which can misplace a cycle start, e.g. step 242 of
    ``T_0=2, T_mult=3``)."""
    if count < warmup:
        return 1.0
    start, length = 0, t0
    while count >= start + length:
        start, length = start + length, length * mult
    return (1 + math.cos(math.pi * (count - start) / length)) / 2


@pytest.mark.parametrize("warmup,t0,mult", [(780, 4, 2), (5, 3, 1), (0, 2, 3)])
def test_cosine_restarts_equal_pytorch_warm_restarts_after_the_constant_warmup(warmup, t0, mult):
    counts = np.arange(3000)
    got = np.asarray(cosine_restarts(warmup, t0, mult)(jnp.asarray(counts)))
    expected = [_torch_warm_restarts(int(c), warmup, t0, mult) for c in counts]
    np.testing.assert_allclose(got, expected, atol=2e-6)
    cfg = OptimizerConfig("sgd", lr=0.1, momentum=0.0, schedule="cosine_restarts", warmup_steps=2, restart_steps=3)
    np.testing.assert_allclose(_updates(cfg, 12), [-0.1 * _torch_warm_restarts(c, 2, 3, 2) for c in range(12)],
                               rtol=1e-5, atol=1e-9)


class TorchPlateau:
    """PyTorch ``ReduceLROnPlateau.step`` (mode min, threshold_mode rel, cooldown 0, min_lr 0), in plain Python."""

    def __init__(self, lr, factor, patience, threshold):
        self.lr, self.factor, self.patience, self.threshold = lr, factor, patience, threshold
        self.best, self.bad = math.inf, 0

    def step(self, loss):
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            new = max(self.lr * self.factor, 0.0)
            if self.lr - new > 1e-8:
                self.lr = new
            self.bad = 0
        return self.lr


def test_plateau_equals_pytorch_reduce_lr_on_plateau_per_run():
    losses = np.array([[1.0, 0.9, 0.95, 0.91, 0.9, 0.9, 0.5, 0.6, 0.7, 0.8, 0.5, float("nan"), 0.49, 0.4999],
                       [2.0, 1.0, 0.5, 0.25, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]])
    factor, patience, threshold = 0.5, 1, 1e-2
    cfg = OptimizerConfig("adam", lr=1e-3, schedule="plateau")
    opt = make_optimizer(cfg)
    lrs = np.array([1e-3, 1e-5], np.float32)
    state = jax.vmap(lambda lr: init_optimizer(opt, jnp.zeros(2), lr, 0.0))(jnp.asarray(lrs))
    torch = [TorchPlateau(float(lr), factor, patience, threshold) for lr in lrs]
    best, bad = np.full(2, np.inf, np.float32), np.zeros(2, np.int32)
    for epoch in range(losses.shape[1]):
        best, bad, reduce = plateau_step(best, bad, losses[:, epoch], patience=patience, threshold=threshold)
        state = reduce_learning_rate(state, reduce, factor)
        expected = [t.step(float(l)) for t, l in zip(torch, losses[:, epoch])]
        np.testing.assert_allclose(state.hyperparams["learning_rate"], expected, rtol=1e-6)
    assert float(state.hyperparams["learning_rate"][0]) < 1e-3 / 4  # it did decay, several times
