"""The train state pytree and model construction for a (vmapped) set of runs."""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.methods.base import Method
from jaxmm.models.multimodal import ModelConfig, MultimodalClassifier
from jaxmm.train.optim import init_optimizer


class TrainState(NamedTuple):
    """Everything a step reads and writes (one run; a grid stacks a leading run axis).

    Attributes:
      params: ``nnx.Param`` state of the model.
      rest: the model's other state (dropout streams, batch statistics).
      opt_state: ``(method transformation state, optimiser state)``.
      method_state: the method's own state.
      rng: the run's PRNG key (raw uint32 key data, so checkpoints can hold it).
      step: optimiser steps taken.
      epoch: epochs completed.
    """

    params: Any
    rest: Any
    opt_state: Any
    method_state: Any
    rng: jax.Array
    step: jax.Array
    epoch: jax.Array


def build_model(method: Method, input_shapes: Mapping[str, int | Sequence[int]], num_outputs: int,
                cfg: ModelConfig, rngs: nnx.Rngs) -> MultimodalClassifier:
    """The model a method needs, restricted to the modalities it uses.

    Args:
      method: the method (its :class:`~jaxmm.methods.base.ModelSpec` and extra modules).
      input_shapes: modality -> shape of one example of the dataset (an int: a vector width).
      num_outputs: logits per head.
      cfg: the model configuration.
      rngs: initialisation and dropout randomness.

    Raises:
      ValueError: the method needs a modality the dataset lacks, or ``cfg`` names
        encoders or layouts for modalities the dataset lacks.
    """
    mods = method.model.modalities or tuple(input_shapes)
    unknown = set(mods) - set(input_shapes)
    if unknown:
        raise ValueError(f"method {method.name!r} needs modalities {sorted(unknown)} the dataset lacks; "
                         f"it has {sorted(input_shapes)}")
    named = (set(cfg.encoders) | set(cfg.layouts)) - set(input_shapes)
    if named:
        raise ValueError(f"model.encoders/model.layouts name modalities {sorted(named)} the dataset lacks; "
                         f"it has {sorted(input_shapes)}")
    return MultimodalClassifier({m: input_shapes[m] for m in mods}, num_outputs, cfg,
                                unimodal_heads=method.model.unimodal_heads, fuse=method.model.fuse,
                                extra_modules=method.extra_modules, rngs=rngs)


def graphdefs(method, input_shapes, num_outputs, cfg):
    """Static train- and eval-mode graph definitions (no arrays are allocated).

    Train mode uses batch statistics in BatchNorm (and updates the running
    averages held in ``rest``), eval mode the running averages.
    """
    model = nnx.eval_shape(lambda: build_model(method, input_shapes, num_outputs, cfg, nnx.Rngs(0)))
    model.train()
    train_def = nnx.split(model, nnx.Param, ...)[0]
    model.eval()
    eval_def = nnx.split(model, nnx.Param, ...)[0]
    return train_def, eval_def


def param_group(path) -> str:
    """Parameter group of a parameter path: its modality for encoders, ``head`` for unimodal heads, else ``fusion``."""
    keys = [getattr(k, "key", getattr(k, "name", k)) for k in path]
    if keys[0] == "encoders":
        return str(keys[1])
    return "head" if keys[0] == "unimodal_heads" else "fusion"


def param_labels(params):
    """The ``labels`` pytree (see :func:`param_group`) that method transformations route by."""
    return jax.tree_util.tree_map_with_path(lambda path, _: param_group(path), params)


def init_state(method, input_shapes, num_outputs, cfg, optimizer, transform, seed, hparams,
               example_batch) -> TrainState:
    """One run's initial state from its seed (traceable: vmap it over seeds and hparams)."""
    key = jax.random.PRNGKey(seed)
    init_key, dropout_key, run_key = jax.random.split(key, 3)
    model = build_model(method, input_shapes, num_outputs, cfg, nnx.Rngs(params=init_key, dropout=dropout_key))
    method_state = method.init_state(model, example_batch)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = (transform.init(params), init_optimizer(optimizer, params, hparams["lr"], hparams["weight_decay"]))
    return TrainState(params, rest, opt_state, method_state, run_key,
                      jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
