"""Shared by the method tests: building a model, a method's terms as one compiled call, one-run epoch hooks."""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.methods import EpochContext, RunState, StepContext
from jaxmm.train.state import build_model, model_factory


def make_model(method, dims, num_outputs, cfg, rngs_or_seed=0):
    """The model the trainer builds for ``method`` (extras attached), modality -> width (or shape) ``dims``."""
    shapes = {m: (d,) if isinstance(d, int) else tuple(d) for m, d in dims.items()}
    rngs = rngs_or_seed if isinstance(rngs_or_seed, nnx.Rngs) else nnx.Rngs(rngs_or_seed)
    return build_model(method, model_factory(method, cfg, shapes, num_outputs), num_outputs, rngs)


def jit_terms(method, model):
    """``(batch, ctx) -> method.terms(model, batch, ctx)`` compiled once for ``model``'s state.

    The context's arrays are traced; its modalities and task are static.
    """
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, static_argnums=(3,))
    def compiled(s, batch, dynamic, static):
        return method.terms(nnx.merge(graphdef, s), batch, StepContext(*dynamic, *static))

    return lambda batch, ctx: compiled(state, batch, (ctx.rng, ctx.hparams, ctx.epoch, ctx.state, ctx.step),
                                       (ctx.modalities, ctx.task))


def run_hook(method, params, state, epoch, num_epochs, labels=None, outputs=None, step=0):
    """``method.epoch_end.update`` on one run; returns the new :class:`RunState`."""
    context = EpochContext(epoch, num_epochs, labels or {}, outputs or {})
    return method.epoch_end.update(RunState(params, state, step, {}), context)


def run_hook_vmapped(method, params, state, epoch, num_epochs, labels=None, outputs=None):
    """``method.epoch_end.update`` vmapped over a leading run axis of every argument (as the trainer runs it)."""
    runs = jax.tree.leaves(params)[0].shape[0]

    def one(p, s, st, lab, out):
        return method.epoch_end.update(RunState(p, s, st, {}), EpochContext(epoch, num_epochs, lab, out))

    return jax.vmap(one)(params, state, jnp.zeros(runs, jnp.int32), labels or {}, outputs or {})
