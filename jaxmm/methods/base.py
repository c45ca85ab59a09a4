"""The method interface: what a method supplies for the generic trainer to run it.

A method is a frozen :class:`Method` record of pure functions; nothing
subclasses the trainer. See DESIGN.md, "the method interface".
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from jaxmm.data.types import Batch
from jaxmm.losses import classification_loss
from jaxmm.models.multimodal import ModelOutput


class StepContext(NamedTuple):
    """What a method's ``terms`` sees besides the model and the batch (a pytree).

    Attributes:
      rng: PRNG key for this step (already split off the run's stream).
      hparams: scalar hyper-parameters of this run (traced, so a grid of runs
        with different values is one vmapped program), e.g. ``lam``, ``lr``.
      epoch: current epoch (traced int).
      method_state: the method's own state (EMA statistics, per-example weights, …).
      step: optimiser steps taken so far (traced int; alternating schedules read it).
    """

    rng: jax.Array
    hparams: dict[str, jax.Array]
    epoch: jax.Array
    method_state: Any
    step: Any = 0


class EpochContext(NamedTuple):
    """What an ``epoch_end`` hook may read besides the train state and the epoch's statistics.

    Attributes:
      epoch: the epoch just completed (0-based).
      num_epochs: the configured number of epochs.
      data: split name (``train``, ``val``, ``test``) -> the split stacked over runs
        (a host :class:`Batch` with ``[R, N, ...]`` arrays).
      outputs: ``(train_state, split name) -> ModelOutput`` of the eval-mode model over
        the whole split, numpy ``[R, N, ...]`` (logits, unimodal logits, features).
    """

    epoch: int
    num_epochs: int
    data: Mapping[str, Batch]
    outputs: Callable[[Any, str], ModelOutput]


TermsFn = Callable[[Any, Batch, StepContext], tuple[dict[str, jax.Array], dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the model must contain for a method.

    Attributes:
      fuse: build the fused head.
      unimodal_heads: build a head per modality.
      modalities: restrict the model to these modalities (``None``: all).
    """

    fuse: bool = True
    unimodal_heads: bool = True
    modalities: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method as pure pieces.

    Attributes:
      name: registry name.
      summary: one line for ``jaxmm methods``.
      terms: ``(model, batch, ctx) -> (per-example terms, aux)``. ``aux`` may hold
        ``"method_state"`` (the updated state) and scalar diagnostics.
      term_weights: ``ctx -> {term: weight}``; the loss is ``Σ w_t · mean(term_t)``.
      hparams: defaults of the vmappable scalar hyper-parameters the method reads.
      model: what the model must contain.
      predict: inference rule, ``ModelOutput -> [B, K]`` logits or probabilities.
      forward: ``(model, inputs) -> ModelOutput`` evaluation forward pass for methods
        whose prediction is not the plain ``model(inputs)`` (a shared head, a gated
        mixture, a cosine head in ``model.extras``); ``None``: ``model(inputs)``.
      init_state: ``(model, example batch) -> method state`` (default: empty dict).
      extra_modules: ``(trunk_width, num_outputs, rngs, feature_widths) -> {name: nnx.Module}``
        the method adds to the model (``model.extras``; ``feature_widths``: modality -> encoder
        output width), or ``None``.
      transform: ``(modalities, labels) -> optax.GradientTransformationExtraArgs``
        applied to the gradient before the optimiser (``labels`` maps parameters to
        their group: a modality name for its encoder, ``"head"`` for unimodal heads,
        ``"fusion"`` otherwise), or ``None``.
      extra_args: ``(ctx, aux) -> dict`` keyword arguments for ``transform.update``
        (e.g. per-modality scores); the trainer always adds ``epoch`` (and passes
        ``params`` positionally),
        and ``term_grads`` (stacked in sorted term order) when ``per_term_grads``.
      transform_metrics: ``(transform state, modalities) -> {name: scalar}`` diagnostics
        of the transform logged every step as ``train/<name>`` (OGM-GE's ``coef/<m>``,
        RedReg's and InfoReg's ``beta/<m>``), or ``None``.
      per_term_grads: compute per-term gradients (one forward, a vmapped VJP).
      update_mask: ``(params, extra args) -> pytree of booleans`` shaped like ``params``
        (leaves broadcastable): after the optimiser, a parameter whose entry is False keeps
        its exact previous value, so frozen parameters stay bit-identical (zeroing their
        gradient in ``transform`` is not enough: weight decay and momentum still move them).
        ``extra args`` are those handed to ``transform`` (``epoch``, …). ``None``: no mask.
      epoch_end: ``(train_state, epoch_stats, EpochContext) -> train_state`` hook run
        on the host after every epoch (re-initialisations, weight refreshes, stage
        switches); the state has a leading run axis. ``None``: no hook.
      options: the static options the method was built with (logged in config.json).
    """

    name: str
    summary: str
    terms: TermsFn
    term_weights: Callable[[StepContext], Mapping[str, Any]]
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    model: ModelSpec = ModelSpec()
    predict: Callable[[ModelOutput], jax.Array] = lambda out: out.logits
    forward: Callable[[Any, Mapping[str, jax.Array]], ModelOutput] | None = None
    init_state: Callable[[Any, Batch], Any] = lambda model, batch: {}
    extra_modules: Callable | None = None
    transform: Callable | None = None
    extra_args: Callable[[StepContext, dict], dict] | None = None
    transform_metrics: Callable[[Any, tuple[str, ...]], Mapping[str, jax.Array]] | None = None
    per_term_grads: bool = False
    update_mask: Callable[[Any, Mapping[str, Any]], Any] | None = None
    epoch_end: Callable | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def unimodal_ce(out: ModelOutput, labels: jax.Array) -> jax.Array:
    """Sum over modalities of each unimodal head's per-example cross-entropy."""
    return sum(classification_loss(logits, labels) for logits in out.unimodal_logits.values())


def average_softmax(out: ModelOutput) -> jax.Array:
    """Ensemble inference: mean of the unimodal heads' probabilities (sigmoid for one logit)."""
    probs = [
        jax.nn.sigmoid(v) if v.shape[-1] == 1 else jax.nn.softmax(v, axis=-1)
        for v in out.unimodal_logits.values()
    ]
    mean = jnp.mean(jnp.stack(probs), axis=0)
    # Binary heads: return a logit so that "> 0" thresholds the averaged probability at 0.5.
    return jnp.log(mean) - jnp.log1p(-mean) if mean.shape[-1] == 1 else mean


def per_modality(prefix: str, values: jax.Array, modalities) -> dict[str, jax.Array]:
    """``{f"{prefix}/{m}": values[i]}`` for an ``[M]`` array in ``modalities`` order (a ``transform_metrics`` helper)."""
    return {f"{prefix}/{m}": values[i] for i, m in enumerate(modalities)}
