"""Jitted, vmapped and sharded step functions for a grid of runs of one method."""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmm.data.types import Batch
from jaxmm.methods.base import Method
from jaxmm.models.multimodal import ModelConfig, ModelOutput
from jaxmm.train.config import OptimizerConfig
from jaxmm.train.optim import make_optimizer
from jaxmm.train.sharding import make_data_mesh, replicate, shard_batch
from jaxmm.train.state import TrainState, graphdefs, init_state, param_labels
from jaxmm.train.step import build_eval_step, build_train_step


def resolve_hparams(method: Method, opt: OptimizerConfig, overrides: Sequence[Mapping[str, float]]) -> dict:
    """Per-run hyper-parameters stacked into ``{name: float32 [R]}``.

    Each run gets the method's defaults, ``lr``/``weight_decay`` from ``opt``,
    then its own overrides.

    Raises:
      ValueError: an override names a hyper-parameter the method does not read.
    """
    base = {**method.hparams, "lr": opt.lr, "weight_decay": opt.weight_decay}
    for o in overrides:
        unknown = set(o) - set(base)
        if unknown:
            raise ValueError(f"method {method.name!r} has no hyper-parameter(s) {sorted(unknown)}; "
                             f"valid: {sorted(base)}")
    return {k: np.asarray([float(o.get(k, v)) for o in overrides], np.float32) for k, v in base.items()}


class Trainer:
    """Compiled functions for ``R`` runs of ``method`` trained side by side.

    Every function takes and returns pytrees with a leading run axis; batches
    are ``[R, B, ...]`` sharded over the mesh's ``data`` axis, state is replicated.

    Args:
      method: the method.
      input_shapes: modality -> shape of one example (an int: a vector width).
      num_outputs: logits per head.
      model_cfg: the model.
      opt_cfg: optimiser and learning-rate schedule.
      mesh: device mesh (default: all devices).
      per_term_grads: route the gradient through per-term VJPs (see :func:`build_train_step`).
      steps_per_epoch: optimiser steps per epoch (needed by per-epoch learning-rate schedules).
    """

    def __init__(self, method: Method, input_shapes: Mapping[str, int | Sequence[int]], num_outputs: int,
                 model_cfg: ModelConfig, opt_cfg: OptimizerConfig, mesh=None, per_term_grads: bool = False,
                 steps_per_epoch: int | None = None):
        self.method = method
        self.input_shapes = dict(input_shapes)
        self.num_outputs = num_outputs
        self.model_cfg = model_cfg
        self.mesh = mesh or make_data_mesh()
        self.optimizer = make_optimizer(opt_cfg, steps_per_epoch)
        modalities = method.model.modalities or tuple(self.input_shapes)
        self.transform = (method.transform(modalities, param_labels) if method.transform
                          else optax.with_extra_args_support(optax.identity()))
        self.train_def, self.eval_def = graphdefs(method, self.input_shapes, num_outputs, model_cfg)
        self.traces = 0
        step = build_train_step(method, self.train_def, self.optimizer, self.transform, modalities,
                                per_term=per_term_grads or method.per_term_grads)

        def counted_step(state, batch, hparams):
            self.traces += 1  # runs at trace time only: counts compilations
            return jax.vmap(step)(state, batch, hparams)

        self._step = jax.jit(counted_step, donate_argnums=(0,))
        self._eval = jax.jit(jax.vmap(build_eval_step(method, self.eval_def)))
        self._outputs = jax.jit(jax.vmap(build_eval_step(method, self.eval_def, raw=True)))

    def init(self, seeds: Sequence[int], hparams: dict, example: Batch) -> TrainState:
        """Initial state of every run (``example``: one run's host batch, for shapes)."""
        def one(seed, hp):
            return init_state(self.method, self.input_shapes, self.num_outputs, self.model_cfg,
                              self.optimizer, self.transform, seed, hp, jax.tree.map(jnp.asarray, example))

        state = jax.jit(jax.vmap(one))(jnp.asarray(seeds, jnp.uint32), hparams)
        return replicate(state, self.mesh)

    def step(self, state: TrainState, batch: Batch, hparams: dict):
        """One optimiser step of every run; ``batch`` is ``[R, B, ...]``, on the host or already sharded."""
        return self._step(state, shard_batch(batch, self.mesh), replicate(hparams, self.mesh))

    def predict(self, state: TrainState, data: Batch, chunk: int):
        """Predictions over a whole stacked split ``[R, N, ...]`` in chunks of ``chunk``.

        Returns:
          (``[R, N, K]`` predictions, modality -> ``[R, N, K]`` unimodal logits), numpy.
        """
        return self._chunked(self._eval, state, data, chunk)

    def outputs(self, state: TrainState, data: Batch, chunk: int) -> ModelOutput:
        """The eval-mode :class:`ModelOutput` (logits, unimodal logits, features) over a stacked split, numpy."""
        return self._chunked(self._outputs, state, data, chunk)

    def _chunked(self, fn, state: TrainState, data: Batch, chunk: int):
        n = data.label.shape[1]
        devices = self.mesh.shape["data"]
        chunk = max(devices, min(chunk, -(-n // devices) * devices) // devices * devices)
        parts = []
        for start in range(0, n, chunk):
            inputs = {k: v[:, start:start + chunk] for k, v in data.inputs.items()}
            size = next(iter(inputs.values())).shape[1]
            if size < chunk:
                inputs = {k: np.concatenate([v, np.repeat(v[:, :1], chunk - size, axis=1)], axis=1)
                          for k, v in inputs.items()}
            out = fn(state.params, state.rest, shard_batch(inputs, self.mesh))
            parts.append(jax.tree.map(lambda x, size=size: np.asarray(x)[:, :size], out))
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *parts)
