"""The one train step every method runs, and the evaluation forward pass.

Both are pure functions of a single run's :class:`TrainState`; the trainer vmaps them over runs
and jits the result once.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxmm.batch_reduce import axis_name, batch_mean
from jaxmm.data.augment import augment_inputs
from jaxmm.data.types import Batch
from jaxmm.methods.base import Method, StepContext, Terms, valid_of
from jaxmm.tasks import Task
from jaxmm.train.state import TrainState


def masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean of per-example ``values`` over examples with ``valid == 1`` (padding excluded).

    Global over the batch: in a per-device step the sums and the count are reduced over devices.
    """
    if values.ndim != 1:
        raise ValueError(f"loss terms must be per-example [B] arrays, got shape {values.shape}")
    return batch_mean(values, valid)


def is_random_key(x) -> bool:
    """Whether ``x`` is an array of typed PRNG keys (a model's random stream)."""
    return jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key)


def per_device_model_keys(rest):
    """``rest`` with the model's own random streams (dropout, routing noise) folded with the device index.

    Outside a per-device step ``rest`` is returned as is. Inside one, every device would otherwise
    draw the same dropout masks for its different rows; the folded streams are the same on a rerun
    with the same device count, but differ from the one-device draws.
    """
    name = axis_name()
    if name is None:
        return rest
    index = jax.lax.axis_index(name)
    return jax.tree.map(lambda x: jax.random.fold_in(x, index) if is_random_key(x) else x, rest)


def per_term_gradients(term_means_fn, params):
    """Per-term gradients: the Jacobian of the stacked term means (``jax.jacrev``, one forward pass).

    ``jax.jacrev`` is a vmapped VJP; ``benchmarks/bench_per_term_grads.py`` measured it as fast as
    the hand-written one (identical values).

    Args:
      term_means_fn: ``params -> ({name: scalar}, aux)``.
      params: the parameters to differentiate.

    Returns:
      (term means, stacked gradients with leading axis over ``sorted(names)``, aux).
    """
    def vector_fn(p):
        means, aux = term_means_fn(p)
        return jnp.stack([means[n] for n in sorted(means)]), (means, aux)

    stacked, (means, aux) = jax.jacrev(vector_fn, has_aux=True)(params)
    return means, stacked, aux


def build_train_step(method: Method, graphdef, optimizer: optax.GradientTransformation,
                     transform: optax.GradientTransformationExtraArgs, modalities: tuple[str, ...],
                     task: Task, per_term: bool = False, augment_frames: tuple[str, ...] = ()):
    """``step(state, batch, hparams) -> (state, metrics)`` for one run.

    The gradient is masked by ``method.trainable``, goes through the method's ``transform`` (its
    extra args: the step's ``Terms.signals`` plus ``epoch``) and then the ``optimizer``; the mask
    is applied to the new parameters too, so frozen parameters keep their exact values.

    Args:
      method: the method.
      graphdef: train-mode graph definition of the model.
      optimizer: the optax optimiser.
      transform: the method's gradient transformation (identity if it has none).
      modalities: the model's modalities (``StepContext.modalities``, the names of the
        transform's metrics).
      task: the task (``StepContext.task``).
      per_term: compute per-term gradients with one forward and a vmapped VJP (exposed as
        ``metrics['grad_norm/<term>']`` and handed to ``transform`` as ``term_grads``); the
        combined gradient is their weighted sum.
      augment_frames: modalities whose ``uint8`` frames get a random resized crop and flip
        (:func:`~jaxmm.data.augment.augment_inputs`, seeded by the run's key and step) before
        the model sees them.
    """

    def step(state: TrainState, batch: Batch, hparams: dict[str, jax.Array]):
        if augment_frames:
            batch = batch._replace(inputs=augment_inputs(state.rng, state.step, batch.inputs, augment_frames))
        rng, step_key = jax.random.split(state.rng)
        ctx = StepContext(step_key, hparams, state.epoch, state.method_state, state.step, modalities, task)
        valid = valid_of(batch)

        model_rest = per_device_model_keys(state.rest)

        def term_means(params):
            model = nnx.merge(graphdef, params, model_rest, copy=True)
            terms = method.terms(model, batch, ctx)
            if not isinstance(terms, Terms):
                raise TypeError(f"{method.name}: terms must return a jaxmm.methods.Terms record, "
                                f"got {type(terms).__name__}")
            rest = nnx.split(model, nnx.Param, ...)[2]
            return {k: masked_mean(v, valid) for k, v in terms.losses.items()}, (terms, rest)

        weights = method.term_weights(ctx)
        metrics: dict[str, Any] = {}
        extra: dict[str, Any] = {"epoch": state.epoch}
        if per_term:
            means, stacked, (terms, rest) = per_term_gradients(term_means, state.params)
            w = jnp.stack([jnp.asarray(weights[n], jnp.float32) for n in sorted(means)])
            grads = jax.tree.map(lambda g: jnp.tensordot(w.astype(g.dtype), g, axes=1), stacked)
            for i, n in enumerate(sorted(means)):
                metrics[f"grad_norm/{n}"] = optax.tree.norm(jax.tree.map(lambda g, i=i: g[i], stacked))
            extra["term_grads"] = stacked
        else:
            def total(params):
                means, aux = term_means(params)
                return sum(weights[k] * v for k, v in means.items()), (means, aux)

            grads, (means, (terms, rest)) = jax.grad(total, has_aux=True)(state.params)
        loss = sum(weights[k] * v for k, v in means.items())
        extra.update(terms.signals)
        keep = method.trainable(state.params, ctx) if method.trainable is not None else None
        if keep is not None:
            grads = jax.tree.map(lambda g, k: jnp.where(k, g, jnp.zeros_like(g)), grads, keep)
        grads, transform_state = transform.update(grads, state.transform_state, state.params, **extra)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if keep is not None:  # frozen parameters keep their exact values (no momentum or decay drift)
            params = jax.tree.map(jnp.where, keep, params, state.params)
        if method.transform is not None and method.transform.metrics is not None:
            metrics.update(method.transform.metrics(transform_state, modalities))
        metrics.update({"loss": loss, **{f"term/{k}": v for k, v in means.items()}, **terms.logs})
        method_state = state.method_state if terms.state is None else terms.state
        new_state = state._replace(params=params, rest=rest, transform_state=transform_state, opt_state=opt_state,
                                   method_state=method_state, rng=rng, step=state.step + 1)
        return new_state, metrics

    return step


def build_eval_step(method: Method, graphdef, modalities: tuple[str, ...], task: Task, raw: bool = False):
    """``eval_step(params, rest, method_state, inputs) -> (prediction, {modality: unimodal logits})``.

    The prediction is the ``logits`` of the method's ``forward``; with ``raw``, the eval-mode
    :class:`~jaxmm.models.multimodal.ModelOutput` itself (features included).
    """

    def eval_step(params, rest, method_state, inputs):
        ctx = StepContext(state=method_state, modalities=modalities, task=task)
        out = method.forward(nnx.merge(graphdef, params, rest), inputs, ctx)
        return out if raw else (out.logits, out.unimodal_logits)

    return eval_step
