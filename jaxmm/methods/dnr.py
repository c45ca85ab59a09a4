"""Diagnosing & Re-learning (Wei, Li, Feng, Hu, ECCV 2024).

Training is plain CE on the fused head. After epoch ``e`` (0-based) with
``e > 0``, ``e % reinit_epoch == 0`` and ``e // reinit_epoch <= reinit_num``
(official CREMA-D: after epochs 20, 40, 60), the epoch hook

1. diagnoses every modality: clustering purity of its eval-mode encoder
   features on the training and the validation split
   (:func:`jaxmm.metrics.clustering.clustering_purity`, k-means with ``k`` = classes);
2. sets ``α_m = tanh(λ · |P_train^m − P_val^m|)``;
3. re-learns: every parameter of encoder ``m`` becomes
   ``α_m θ_init + (1 − α_m) θ`` (heads, BatchNorm statistics and optimiser
   state untouched). ``θ_init`` (the parameters at initialisation) is kept in the
   method state.

Differences to the official code: k-means is a JAX k-means++/Lloyd
(``kmeans_restarts`` restarts, fixed ``kmeans_seed``) instead of sklearn's; and
the hook runs before the epoch's evaluation, so the epoch's validation and test
metrics see the re-initialised encoders (the code evaluates, then re-initialises).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.methods.base import EpochHook, Method, ModelSpec, Terms
from jaxmm.methods.registry import register
from jaxmm.metrics.clustering import clustering_purity
from jaxmm.models.groups import param_labels
from jaxmm.transforms.dnr import reinit, reinit_strength


def is_reinit_epoch(epoch: int, reinit_epoch: int, reinit_num: int) -> bool:
    """Whether the hook acts after 0-based ``epoch``.

    It does when ``e > 0``, ``e % reinit_epoch == 0`` and ``e // reinit_epoch <= reinit_num``.
    """
    return epoch > 0 and epoch % reinit_epoch == 0 and epoch // reinit_epoch <= reinit_num


@register("dnr")
def dnr(lam: float = 3.0, reinit_epoch: int = 20, reinit_num: int = 3, kmeans_iters: int = 100,
        kmeans_restarts: int = 1, kmeans_seed: int = 0) -> Method:
    """Diagnosing & Re-learning: purity-gap-driven soft re-initialisation of each encoder.

    Args:
      lam: λ of ``α = tanh(λ · gap)`` (official ``move_lambda`` 3).
      reinit_epoch: diagnose after every this many epochs (official CREMA-D 20; BalanceBenchmark 15).
      reinit_num: at most this many re-initialisations (official 3; BalanceBenchmark 2).
      kmeans_iters: Lloyd iterations of the diagnosis.
      kmeans_restarts: k-means++ restarts (sklearn ≥ 1.4: 1; older: 10).
      kmeans_seed: k-means seed (the code's ``random_state=0``).

    Raises:
      ValueError: an option out of range.
    """
    if lam < 0 or reinit_epoch < 1 or reinit_num < 0 or kmeans_iters < 1 or kmeans_restarts < 1:
        raise ValueError(f"dnr: need lam >= 0, reinit_epoch >= 1, reinit_num >= 0, kmeans_iters >= 1 and "
                         f"kmeans_restarts >= 1; got lam={lam}, reinit_epoch={reinit_epoch}, "
                         f"reinit_num={reinit_num}, kmeans_iters={kmeans_iters}, kmeans_restarts={kmeans_restarts}")

    def terms(model, batch, ctx):
        return Terms({"ce": ctx.loss(model(batch.inputs).logits, batch.label)})

    def init_state(model, batch):
        return {"init": nnx.state(model, nnx.Param),
                "strength": {m: jnp.zeros((), jnp.float32) for m in model.modalities}}

    def relearn(run, context):
        key = jax.random.PRNGKey(kmeans_seed)
        num_classes = max(2, context.outputs["train"].logits.shape[-1])
        strength, logs = {}, {}
        for m in run.state["strength"]:
            purity = {split: clustering_purity(key, out.features[m], context.labels[split], num_classes,
                                               iters=kmeans_iters, n_init=kmeans_restarts)
                      for split, out in context.outputs.items()}
            strength[m] = reinit_strength(purity["train"], purity["val"], lam)
            logs.update({f"dnr/purity_{split}/{m}": p for split, p in purity.items()})
            logs[f"dnr/strength/{m}"] = strength[m]
        params = reinit(run.params, run.state["init"], strength, labels=context.param_labels or param_labels)
        return run._replace(params=params, state={**run.state, "strength": strength}, logs=logs)

    def due(epoch):
        return is_reinit_epoch(epoch, reinit_epoch, reinit_num)

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=False),
        init_state=init_state,
        epoch_end=EpochHook(lambda run, context: relearn(run, context) if due(context.epoch) else run,
                            reads=lambda epoch, num_epochs: ("train", "val") if due(epoch) else ()),
    )
