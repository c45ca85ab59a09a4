"""The one train step every method runs, and the evaluation forward pass.

Both are pure functions of a single run's :class:`TrainState`; the loop vmaps
them over runs and jits the result once.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxmm.data.types import Batch
from jaxmm.methods.base import Method, StepContext
from jaxmm.train.state import TrainState


def masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean of per-example ``values`` over examples with ``valid == 1`` (padding excluded)."""
    if values.ndim != 1:
        raise ValueError(f"loss terms must be per-example [B] arrays, got shape {values.shape}")
    w = valid.astype(values.dtype)
    return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1.0)


def per_term_gradients(term_means_fn, params):
    """Per-term gradients from one forward pass and a vmapped VJP.

    Args:
      term_means_fn: ``params -> ({name: scalar}, aux)``.
      params: the parameters to differentiate.

    Returns:
      (term means, stacked gradients with leading axis over ``sorted(names)``, aux).
    """
    def vector_fn(p):
        means, aux = term_means_fn(p)
        names = sorted(means)
        return jnp.stack([means[n] for n in names]), (means, aux)

    vec, vjp_fn, (means, aux) = jax.vjp(vector_fn, params, has_aux=True)
    (stacked,) = jax.vmap(vjp_fn)(jnp.eye(vec.shape[0], dtype=vec.dtype))
    return means, stacked, aux


def build_train_step(method: Method, graphdef, optimizer: optax.GradientTransformation,
                     transform: optax.GradientTransformationExtraArgs, modalities: tuple[str, ...],
                     per_term: bool = False):
    """``step(state, batch, hparams) -> (state, metrics)`` for one run.

    The gradient goes through the method's ``transform`` (with its extra args)
    and then the ``optimizer``; ``state.opt_state`` is ``(transform state,
    optimizer state)``.

    Args:
      method: the method (its terms, weights, state updates and extra args).
      graphdef: train-mode graph definition of the model.
      optimizer: the base optax optimiser.
      transform: the method's gradient transformation (identity if it has none).
      modalities: the modalities ``transform`` was built for (the names of
        ``method.transform_metrics``).
      per_term: compute per-term gradients with one forward and a vmapped VJP
        (exposed as ``metrics['grad_norm/<term>']`` and handed to ``transform`` as
        ``term_grads``); the combined gradient is their weighted sum.
    """

    def step(state: TrainState, batch: Batch, hparams: dict[str, jax.Array]):
        rng, step_key = jax.random.split(state.rng)
        ctx = StepContext(step_key, hparams, state.epoch, state.method_state, state.step)
        valid = batch.meta["valid"]

        def term_means(params):
            model = nnx.merge(graphdef, params, state.rest, copy=True)
            terms, aux = method.terms(model, batch, ctx)
            rest = nnx.split(model, nnx.Param, ...)[2]
            return {k: masked_mean(v, valid) for k, v in terms.items()}, (aux, rest)

        weights = method.term_weights(ctx)
        metrics: dict[str, Any] = {}
        extra: dict[str, Any] = {"epoch": state.epoch}
        if per_term:
            means, stacked, (aux, rest) = per_term_gradients(term_means, state.params)
            w = jnp.stack([jnp.asarray(weights[n], jnp.float32) for n in sorted(means)])
            grads = jax.tree.map(lambda g: jnp.tensordot(w.astype(g.dtype), g, axes=1), stacked)
            for i, n in enumerate(sorted(means)):
                metrics[f"grad_norm/{n}"] = optax.tree.norm(jax.tree.map(lambda g, i=i: g[i], stacked))
            extra["term_grads"] = stacked
        else:
            def total(params):
                means, extra = term_means(params)
                return sum(weights[k] * v for k, v in means.items()), (means, extra)

            grads, (means, (aux, rest)) = jax.grad(total, has_aux=True)(state.params)
        loss = sum(weights[k] * v for k, v in means.items())
        if method.extra_args is not None:
            extra.update(method.extra_args(ctx, aux))
        transform_state, optimizer_state = state.opt_state
        grads, transform_state = transform.update(grads, transform_state, state.params, **extra)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if method.update_mask is not None:  # frozen parameters keep their exact values
            keep = method.update_mask(state.params, extra)
            params = jax.tree.map(jnp.where, keep, params, state.params)
        opt_state = (transform_state, optimizer_state)
        if method.transform_metrics is not None:
            metrics.update(method.transform_metrics(transform_state, modalities))
        method_state = aux.pop("method_state", state.method_state)
        metrics.update({"loss": loss, **{f"term/{k}": v for k, v in means.items()},
                        **{k: v for k, v in aux.items() if jnp.ndim(v) == 0}})
        new_state = state._replace(params=params, rest=rest, opt_state=opt_state, method_state=method_state,
                                   rng=rng, step=state.step + 1)
        return new_state, metrics

    return step


def build_eval_step(method: Method, graphdef, raw: bool = False):
    """``eval_step(params, rest, inputs) -> (prediction [B, K], {modality: unimodal logits})``.

    With ``raw``, the eval-mode :class:`ModelOutput` itself (features included).
    """

    def eval_step(params, rest, inputs):
        model = nnx.merge(graphdef, params, rest)
        out = method.forward(model, inputs) if method.forward is not None else model(inputs)
        return out if raw else (method.predict(out), out.unimodal_logits)

    return eval_step
