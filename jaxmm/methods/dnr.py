"""Diagnosing & Re-learning (baselines.md §7, Wei, Li, Feng, Hu, ECCV 2024).

Training is plain CE on the fused head. After epoch ``e`` (0-based) with
``e > 0``, ``e % reinit_epoch == 0`` and ``e // reinit_epoch <= reinit_num``
(official CREMA-D: after epochs 20, 40, 60), the epoch hook

1. diagnoses every modality: clustering purity of its eval-mode encoder
   features on the training and the validation split
   (:func:`jaxmm.transforms.dnr.clustering_purity`, k-means with ``k`` = classes);
2. sets ``α_m = tanh(λ · |P_train^m − P_val^m|)``;
3. re-learns: every parameter of encoder ``m`` becomes
   ``α_m θ_init + (1 − α_m) θ`` (heads, BatchNorm statistics and optimiser
   state untouched). ``θ_init`` (the encoders at initialisation) is kept in the
   method state.

Differences to the official code: k-means is a JAX k-means++/Lloyd
(``kmeans_restarts`` restarts, fixed ``kmeans_seed``) instead of sklearn's; and
the hook runs before the epoch's evaluation, so the epoch's validation and test
metrics see the re-initialised encoders (the code evaluates, then re-initialises).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmm.losses import classification_loss
from jaxmm.methods.base import Method, ModelSpec
from jaxmm.methods.registry import register
from jaxmm.transforms import _tree
from jaxmm.transforms.dnr import clustering_purity, reinit, reinit_strength


def diagnose(features, labels, num_classes: int, key, *, iters: int, n_init: int) -> np.ndarray:
    """Per-run clustering purity of one modality on one split: ``features [R, N, D]``, ``labels [R, N]`` -> ``[R]``."""
    return np.asarray([clustering_purity(key, f, y, num_classes, iters=iters, n_init=n_init)
                       for f, y in zip(features, labels)], np.float32)


def is_reinit_epoch(epoch: int, reinit_epoch: int, reinit_num: int) -> bool:
    """Whether the hook acts after 0-based ``epoch``.

    It does when ``e > 0``, ``e % reinit_epoch == 0`` and ``e // reinit_epoch <= reinit_num``.
    """
    return epoch > 0 and epoch % reinit_epoch == 0 and epoch // reinit_epoch <= reinit_num


def _param_labels(params):
    from jaxmm.train.state import param_labels  # noqa: PLC0415 (jaxmm.train imports the methods package)

    return param_labels(params)


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
        return {"ce": classification_loss(model(batch.inputs).logits, batch.label)}, {}

    def init_state(model, batch):
        params = nnx.state(model, nnx.Param)
        return {"init": _tree.keep_groups(_param_labels, params, model.modalities),
                "strength": {m: jnp.zeros((), jnp.float32) for m in model.modalities}}

    def epoch_end(state, stats, context):
        if not is_reinit_epoch(context.epoch, reinit_epoch, reinit_num):
            return state
        key = jax.random.PRNGKey(kmeans_seed)
        outputs = {split: context.outputs(state, split) for split in ("train", "val")}
        logits = outputs["train"].logits
        num_classes = max(2, logits.shape[-1])
        strength = {}
        for m in state.method_state["strength"]:
            purity = {split: diagnose(out.features[m], context.data[split].label, num_classes, key,
                                      iters=kmeans_iters, n_init=kmeans_restarts)
                      for split, out in outputs.items()}
            strength[m] = np.asarray(reinit_strength(purity["train"], purity["val"], lam))
            for split, p in purity.items():
                stats[f"dnr/purity_{split}/{m}"] = p
            stats[f"dnr/strength/{m}"] = strength[m]
        mixed = jax.vmap(lambda p, p0, a: reinit(p, p0, a, labels=_param_labels))(
            state.params, state.method_state["init"], strength)
        method_state = {**state.method_state, "strength": _tree.put_like(strength, state.method_state["strength"])}
        return state._replace(params=_tree.put_like(mixed, state.params), method_state=method_state)

    return Method(
        name="dnr", summary=dnr.__doc__.splitlines()[0], terms=terms,
        term_weights=lambda ctx: {"ce": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=False),
        init_state=init_state,
        epoch_end=epoch_end,
        options={"lam": lam, "reinit_epoch": reinit_epoch, "reinit_num": reinit_num, "kmeans_iters": kmeans_iters,
                 "kmeans_restarts": kmeans_restarts, "kmeans_seed": kmeans_seed},
    )
