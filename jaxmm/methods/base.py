"""The method interface: what a method supplies for the generic trainer to run it.

A method is a frozen :class:`Method` record of pure functions; nothing subclasses the trainer,
and nothing passes between a method and the trainer outside the declared records:

* ``terms(model, batch, ctx) -> Terms`` returns the per-example losses, the method's new state,
  the *signals* handed verbatim to its gradient transformation as keyword extra args, and
  scalar logs;
* ``forward(model, inputs, ctx) -> ModelOutput`` is the evaluation pass (its ``logits`` are
  the prediction); ``ctx`` carries the method state and the task;
* ``trainable(params, ctx)`` is the one mask the trainer applies to gradients and updates;
* the epoch hook (:class:`EpochHook`) is written for one run; the trainer vmaps it.

Register a method with :func:`jaxmm.methods.registry.register`; the Methods pages of the
documentation describe the registered ones.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from jaxmm.data.types import Batch
from jaxmm.losses.ce import as_categorical
from jaxmm.models.multimodal import ModelOutput
from jaxmm.tasks import Task


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a method's ``terms``, ``term_weights``, ``trainable`` and ``forward`` see besides the model.

    The evaluation pass (``forward``) gets a context with ``state``, ``modalities`` and ``task``
    only (no key, epoch 0).

    Attributes:
      rng: PRNG key for this step (already split off the run's stream).
      hparams: scalar hyper-parameters of this run (traced, so a grid of runs with different
        values is one vmapped program), e.g. ``lam``, ``lr``.
      epoch: current epoch (0-based, traced int).
      state: the method's own state (EMA statistics, per-example weights, …).
      step: optimiser steps taken so far (traced int; alternating schedules read it).
      modalities: the model's modalities, in order (static).
      task: the task (its loss reads predictions and labels).
    """

    rng: Any = None
    hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epoch: Any = 0
    state: Any = None
    step: Any = 0
    modalities: tuple[str, ...] = ()
    task: Task = Task()

    def loss(self, prediction: jax.Array, labels: jax.Array) -> jax.Array:
        """The task's per-example loss (:meth:`jaxmm.tasks.Task.loss`)."""
        return self.task.loss(prediction, labels)


class Terms(NamedTuple):
    """What ``terms`` returns for one step.

    Attributes:
      losses: term name -> per-example ``[B]`` values; the loss is ``Σ_t w_t · mean(term_t)``.
      state: the method's new state (``None``: unchanged).
      signals: keyword extra args handed verbatim to the method's gradient transformation
        (e.g. ``scores={modality: s_m}``, ``alpha``, ``key``).
      logs: scalar diagnostics, logged as ``train/<name>``.
    """

    losses: Mapping[str, jax.Array]
    state: Any = None
    signals: Mapping[str, Any] = {}
    logs: Mapping[str, jax.Array] = {}


class RunState(NamedTuple):
    """One run's state as an epoch hook sees and returns it.

    Attributes:
      params: the model's parameters.
      state: the method's state.
      step: optimiser steps taken (read only).
      logs: scalar diagnostics the hook adds to the epoch's record (returned; empty on entry).
    """

    params: Any
    state: Any
    step: Any
    logs: Mapping[str, Any] = {}


class EpochContext(NamedTuple):
    """What an epoch hook reads besides its run's state (everything for one run).

    Attributes:
      epoch: the epoch just completed (0-based, static).
      num_epochs: the configured number of epochs (static).
      labels: split name -> that split's ``[N]`` labels, for the splits the hook's ``reads``
        asked for.
      outputs: split name -> the eval-mode :class:`ModelOutput` of ``forward`` over the whole
        split (``[N, ...]``), for the same splits.
      param_labels: ``params -> group names`` the trainer routes the transform by (a modality name
        for its encoder's parameters).
      task: the task (its loss reads the outputs and labels).
    """

    epoch: int
    num_epochs: int
    labels: Mapping[str, jax.Array]
    outputs: Mapping[str, ModelOutput]
    param_labels: Callable[[Any], Any] | None = None
    task: Task = Task()


def _never(epoch: int) -> bool:
    return False


def _no_splits(epoch: int, num_epochs: int) -> tuple[str, ...]:
    return ()


@dataclasses.dataclass(frozen=True)
class EpochHook:
    """A hook run after every epoch, written for one run (the trainer vmaps it over runs).

    Attributes:
      update: ``(RunState, EpochContext) -> RunState`` (new parameters, method state and logs);
        traced under ``jax.vmap``, with ``epoch`` and ``num_epochs`` static.
      reads: ``(epoch, num_epochs) -> split names`` whose eval outputs ``update`` needs.
      reset_optimizer: ``epoch -> bool``: restart the optimiser's moments after this epoch
        (:func:`jaxmm.train.optim.fresh_optimizer_state`: schedules keep counting).
    """

    update: Callable[[RunState, EpochContext], RunState]
    reads: Callable[[int, int], tuple[str, ...]] = _no_splits
    reset_optimizer: Callable[[int], bool] = _never


@dataclasses.dataclass(frozen=True)
class GradientTransform:
    """A method's gradient transformation and what the trainer does around it.

    Attributes:
      build: ``(modalities, labels) -> optax.GradientTransformationExtraArgs`` applied to the
        gradient before the optimiser; ``labels(params)`` maps each parameter to its group (a
        modality name for its encoder, ``head`` for unimodal heads, ``fusion`` otherwise).
        Its extra args are the step's ``Terms.signals`` plus ``epoch`` (and ``term_grads``
        with ``per_term_grads``).
      metrics: ``(transform state, modalities) -> {name: scalar}`` logged every step as
        ``train/<name>`` (OGM-GE's ``coef/<m>``, RedReg's ``beta/<m>``), or ``None``.
      per_term_grads: compute per-term gradients (one forward, a vmapped VJP), handed over as
        ``term_grads`` stacked in sorted term order.
    """

    build: Callable
    metrics: Callable[[Any, tuple[str, ...]], Mapping[str, jax.Array]] | None = None
    per_term_grads: bool = False


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a method needs of the model.

    Attributes:
      fuse: the fused head (the built-in model builds it).
      unimodal_heads: a head per modality (``ModelOutput.unimodal_logits``).
      modalities: restrict the model to these modalities (``None``: all).
      extras: ``(model, num_outputs, rngs) -> {name: nnx.Module}`` modules the method adds to
        the model (``model.extras[name]``), or ``None``.
      pieces: attributes the method calls on the model besides ``__call__`` and ``modalities``
        (``encode``, ``encode_one``, ``fuse``, ``unimodal``, ``feature_widths``, ``trunk_width``,
        …); a model lacking one is refused before compilation.
      tasks: the task kinds the method supports.
    """

    fuse: bool = True
    unimodal_heads: bool = True
    modalities: tuple[str, ...] | None = None
    extras: Callable | None = None
    pieces: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ("classification",)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """Name, one-line summary and static options of a method (the registry derives them)."""

    name: str = "custom"
    summary: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _model_forward(model, inputs, ctx) -> ModelOutput:
    return model(inputs)


def _no_state(model, batch) -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method as pure pieces.

    Attributes:
      terms: ``(model, batch, ctx) -> Terms``.
      term_weights: ``ctx -> {term: weight}``; the loss is ``Σ w_t · mean(term_t)`` (``ctx.state``
        is the state before the step).
      hparams: defaults of the vmappable scalar hyper-parameters the method reads.
      model: what the model must contain (:class:`ModelSpec`).
      forward: ``(model, inputs, ctx) -> ModelOutput``, the evaluation pass; its ``logits`` are
        the prediction (a shared head, a gated mixture, an ensemble average); ``ctx.state`` is
        the method state, ``ctx.task`` the task.
      init_state: ``(model, example batch) -> method state``.
      transform: the method's gradient transformation (:class:`GradientTransform`), or ``None``.
      trainable: ``(params, ctx) -> pytree of booleans`` shaped like ``params`` (leaves
        broadcastable): a parameter whose entry is False gets a zero gradient and keeps its exact
        value (no momentum or weight-decay drift). ``None``: everything trains.
      epoch_end: an :class:`EpochHook`, or ``None``.
      info: name, summary and options (set by the registry; see :func:`registry.get_method`).
    """

    terms: Callable[[Any, Batch, StepContext], Terms]
    term_weights: Callable[[StepContext], Mapping[str, Any]]
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    model: ModelSpec = ModelSpec()
    forward: Callable[[Any, Mapping[str, jax.Array], StepContext], ModelOutput] = _model_forward
    init_state: Callable[[Any, Batch], Any] = _no_state
    transform: GradientTransform | None = None
    trainable: Callable[[Any, StepContext], Any] | None = None
    epoch_end: EpochHook | None = None
    info: MethodInfo = MethodInfo()

    @property
    def name(self) -> str:
        """The registry name (``custom`` for a method built by hand)."""
        return self.info.name


def valid_of(batch: Batch) -> jax.Array:
    """``batch.meta['valid']`` (1 for real examples, 0 for padding), or all ones when absent."""
    valid = batch.meta.get("valid")
    return jnp.ones(jnp.shape(batch.label)[:1], jnp.float32) if valid is None else valid


def unimodal_loss(out: ModelOutput, labels: jax.Array, ctx: StepContext) -> jax.Array:
    """Sum over modalities of each unimodal head's per-example task loss."""
    return sum(ctx.loss(logits, labels) for logits in out.unimodal_logits.values())


def average_prediction(unimodal_logits: Mapping[str, jax.Array], task: Task) -> jax.Array:
    """Ensemble inference: the mean of the unimodal predictions.

    Classification averages the heads' probabilities (returned as log-probabilities, or as one
    logit for binary heads, so that argmax / ``> 0`` read them); regression averages the outputs.
    """
    values = list(unimodal_logits.values())
    if task.kind == "regression":
        return jnp.mean(jnp.stack(values), axis=0)
    mean = jnp.mean(jnp.stack([jax.nn.softmax(as_categorical(v), axis=-1) for v in values]), axis=0)
    log_mean = jnp.log(jnp.clip(mean, 1e-30))
    return log_mean[:, 1:] - log_mean[:, :1] if values[0].shape[-1] == 1 else log_mean


def per_modality(prefix: str, values: jax.Array, modalities) -> dict[str, jax.Array]:
    """``{f"{prefix}/{m}": values[i]}`` for an ``[M]`` array in ``modalities`` order."""
    return {f"{prefix}/{m}": values[i] for i, m in enumerate(modalities)}
