"""The train state pytree and model construction for a (vmapped) set of runs.

The trainer accepts the built-in :class:`~jaxmm.models.multimodal.MultimodalClassifier` (from a
:class:`~jaxmm.models.multimodal.ModelConfig`) or any ``nnx.Module`` built by a factory
``rngs -> module`` that follows the model protocol:

* ``modalities``: the modality names, in order;
* ``__call__(inputs) -> ModelOutput``: fused ``logits`` (``None`` without a fused head),
  ``unimodal_logits`` (modality -> logits; empty without heads) and ``features``;
* only where a method reads them (:attr:`ModelSpec.pieces`): ``encode(inputs)``,
  ``encode_one(m, x)``, ``fuse(features, return_trunk=False)``, ``unimodal(m, feature)``,
  ``feature_widths`` and ``trunk_width``.

A method's extra modules are attached as ``model.extras``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.methods.base import Method
from jaxmm.models.multimodal import ModelConfig, ModelOutput, MultimodalClassifier

ModelFactory = Callable[[nnx.Rngs], nnx.Module]


class TrainState(NamedTuple):
    """Everything a step reads and writes (one run; a grid stacks a leading run axis).

    Attributes:
      params: ``nnx.Param`` state of the model.
      rest: the model's other state (dropout streams, batch statistics).
      transform_state: the method's gradient-transformation state.
      opt_state: the optimiser's state.
      method_state: the method's own state.
      rng: the run's PRNG key (raw uint32 key data, so checkpoints can hold it).
      step: optimiser steps taken.
      epoch: epochs completed.
    """

    params: Any
    rest: Any
    transform_state: Any
    opt_state: Any
    method_state: Any
    rng: jax.Array
    step: jax.Array
    epoch: jax.Array


def model_factory(method: Method, model: ModelConfig | ModelFactory, input_shapes: Mapping[str, Sequence[int]],
                  num_outputs: int) -> ModelFactory:
    """``rngs -> nnx.Module``: the built-in classifier a method needs, or the user's own factory.

    Args:
      method: the method (its :class:`~jaxmm.methods.base.ModelSpec`).
      model: a :class:`ModelConfig`, or a factory ``rngs -> nnx.Module`` (used as given).
      input_shapes: modality -> shape of one example of the dataset.
      num_outputs: logits per head.

    Raises:
      ValueError: the method needs a modality the dataset lacks, or ``model`` names encoders or
        layouts for modalities the dataset lacks.
      TypeError: ``model`` is neither a config nor a callable.
    """
    if not isinstance(model, ModelConfig):
        if not callable(model):
            raise TypeError(f"model must be a ModelConfig or a factory rngs -> nnx.Module, got {type(model).__name__}")
        return model
    mods = method.model.modalities or tuple(input_shapes)
    unknown = set(mods) - set(input_shapes)
    if unknown:
        raise ValueError(f"method {method.name!r} needs modalities {sorted(unknown)} the dataset lacks; "
                         f"it has {sorted(input_shapes)}")
    named = (set(model.encoders) | set(model.layouts)) - set(input_shapes)
    if named:
        raise ValueError(f"model.encoders/model.layouts name modalities {sorted(named)} the dataset lacks; "
                         f"it has {sorted(input_shapes)}")
    shapes = {m: input_shapes[m] for m in mods}
    return lambda rngs: MultimodalClassifier(shapes, num_outputs, model, unimodal_heads=method.model.unimodal_heads,
                                             fuse=method.model.fuse, rngs=rngs)


def check_model(method: Method, model: nnx.Module) -> None:
    """Refuses a model that lacks a piece the method reads, naming it.

    Raises:
      ValueError: no ``modalities`` attribute, or a missing piece of :attr:`ModelSpec.pieces`.
    """
    kind = type(model).__name__
    if not isinstance(getattr(model, "modalities", None), (tuple, list)):
        raise ValueError(f"model {kind} has no `modalities` attribute (a tuple of modality names), "
                         "which every jaxmm method reads; add one")
    missing = [p for p in method.model.pieces if not hasattr(model, p)]
    if missing:
        raise ValueError(f"method {method.name!r} reads {missing} of the model, which {kind} lacks; "
                         f"add them (see jaxmm.train.state for the model protocol) or use another method")


def check_output(method: Method, model: nnx.Module, out: ModelOutput) -> None:
    """Refuses a model whose output lacks the fused logits or unimodal logits the method trains.

    Raises:
      ValueError: naming the missing piece.
    """
    kind = type(model).__name__
    if not isinstance(out, ModelOutput):
        raise ValueError(f"model {kind} returned {type(out).__name__}; a jaxmm model returns "
                         "jaxmm.models.ModelOutput(logits, unimodal_logits, features)")
    if method.model.fuse and out.logits is None:
        raise ValueError(f"method {method.name!r} trains the fused head, but model {kind} returns logits=None")
    if method.model.unimodal_heads and set(out.unimodal_logits) != set(model.modalities):
        raise ValueError(f"method {method.name!r} trains a unimodal head per modality, but model {kind} "
                         f"returns unimodal logits for {sorted(out.unimodal_logits)} of {list(model.modalities)}")


def build_model(method: Method, factory: ModelFactory, num_outputs: int, rngs: nnx.Rngs) -> nnx.Module:
    """The model from ``factory``, checked against the method, with the method's extra modules attached."""
    model = factory(rngs)
    check_model(method, model)
    if method.model.extras is not None:
        model.extras = nnx.Dict(method.model.extras(model, num_outputs, rngs))
    return model


def graphdefs(method: Method, factory: ModelFactory, num_outputs: int, batch_norm_axis: str | None = None):
    """Static train- and eval-mode graph definitions and the abstract model (no arrays are allocated).

    Train mode uses batch statistics in BatchNorm (and updates the running averages held in
    ``rest``), eval mode the running averages. With ``batch_norm_axis``, every ``nnx.BatchNorm``
    of the train-mode model reduces its moments over that mesh axis (synchronised BatchNorm in a
    per-device step).

    Returns:
      ``(train graphdef, eval graphdef, abstract train-mode model)``.
    """
    model = nnx.eval_shape(lambda: build_model(method, factory, num_outputs, nnx.Rngs(0)))
    model.eval()
    eval_def = nnx.split(model, nnx.Param, ...)[0]
    model.train()
    norms = [module for _, module in nnx.iter_modules(model) if isinstance(module, nnx.BatchNorm)]
    for module in norms:
        module.axis_name = batch_norm_axis
    train_def = nnx.split(model, nnx.Param, ...)[0]
    for module in norms:  # the returned model is also traced outside the per-device step
        module.axis_name = None
    return train_def, eval_def, model


def init_state(method: Method, factory: ModelFactory, num_outputs: int, transform, seed, example_batch,
               init_optimizer) -> TrainState:
    """One run's initial state from its seed (traceable: vmap it over seeds and hyper-parameters).

    Args:
      init_optimizer: ``params -> optimiser state`` of this run.
    """
    key = jax.random.PRNGKey(seed)
    init_key, dropout_key, run_key = jax.random.split(key, 3)
    model = build_model(method, factory, num_outputs, nnx.Rngs(params=init_key, dropout=dropout_key))
    method_state = method.init_state(model, example_batch)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return TrainState(params, rest, transform.init(params), init_optimizer(params), method_state, run_key,
                      jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
