"""Tests for jaxmm.train.optim: per-epoch step schedules, PyTorch agreement, per-run rates, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.train.config import OptimizerConfig
from jaxmm.train.optim import epoch_schedule, init_optimizer, make_optimizer

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
        OptimizerConfig(schedule="cosine")
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
