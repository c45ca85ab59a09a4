"""Optimisers with per-run (vmappable) learning rate and weight decay."""
from __future__ import annotations

import optax

from jaxmm.train.config import OptimizerConfig

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """An optax optimiser whose ``learning_rate``/``weight_decay`` live in its state.

    ``optax.inject_hyperparams`` puts both in the optimiser state, so a vmapped
    ``init`` with per-run values trains a grid of learning rates in one program.
    Call ``init`` through :func:`init_optimizer`.
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}")

    def build(learning_rate, weight_decay):
        if cfg.name == "adamw":
            return optax.adamw(learning_rate, weight_decay=weight_decay)
        core = optax.adam(learning_rate) if cfg.name == "adam" else optax.sgd(learning_rate, momentum=cfg.momentum)
        return optax.chain(optax.add_decayed_weights(weight_decay), core)

    return optax.inject_hyperparams(build)(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)


def init_optimizer(optimizer, params, lr, weight_decay):
    """``optimizer.init(params)`` with this run's learning rate and weight decay."""
    state = optimizer.init(params)
    hp = dict(state.hyperparams)
    hp["learning_rate"] = lr
    hp["weight_decay"] = weight_decay
    return state._replace(hyperparams=hp)
