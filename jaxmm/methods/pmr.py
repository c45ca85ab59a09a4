"""PMR (Fan et al., CVPR 2023): prototypical modal rebalance.

``L = CE(fused, y) + Σ_m coef_m · PCE_m`` inside the modulation window, with ``PCE_m`` the CE of
the prototype logits ``−‖z^m_i − c^m_k‖`` and ``coef`` read from the ratio of the batch's
prototype scores (:func:`jaxmm.losses.prototype.pmr_loss`). The class prototypes ``c^m`` live in
the method state: before training they are the class means of the first batch's features; after
every epoch the ``epoch_end`` hook recomputes them in eval mode over a random ``proto_fraction``
of the training split (code: the first 10 % of the shuffled training batches) and, after the
first epoch, blends them with momentum ``μ``: ``c ← (1 − μ)·c_new + μ·c_old``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.losses.prototype import PMR_RULES, class_means, class_sums, ema_update, pmr_loss
from jaxmm.methods._responses import eval_view
from jaxmm.methods.base import EpochHook, Method, ModelSpec, Terms, unimodal_loss, valid_of
from jaxmm.methods.registry import register


def _num_classes(logits: jax.Array) -> int:
    return max(logits.shape[-1], 2)


def refresh_prototypes(features, labels, old, num_classes: int, momentum: float, blend: bool):
    """New prototypes from ``[N, D]`` features: class means (an absent class keeps ``old [C, D]``),
    blended with ``old`` by ``momentum`` if ``blend``."""
    new = class_means(*class_sums(features, labels, num_classes), fallback=old)
    return ema_update(old, new, momentum) if blend else new


@register("pmr")
def pmr(rule: str = "code", momentum: float = 0.0, proto_fraction: float = 0.1, modulation_start: int = 0,
        modulation_end: int = 70, entropy_epochs: int = 0, probe_heads: bool = True) -> Method:
    """PMR: prototype CE of the weaker modality scaled from the prototype-score imbalance.

    Args:
      rule: coefficient rule, ``code`` (only modalities below the best score get ``α``) or
        ``continuous`` (the paper's ratio-dependent coefficient; its exact formula is
        unverified, see :func:`jaxmm.losses.prototype.pmr_coefficients`).
      momentum: ``μ`` of the prototype refresh (CREMA-D script 0.0; code default 0.2;
        BalanceBenchmark 0.5).
      proto_fraction: share of the training split the prototypes are computed from (code 0.1).
      modulation_start, modulation_end: the prototype terms act in these epochs (0-based,
        inclusive; CREMA-D script 0..70).
      entropy_epochs: the paper's prototypical entropy regulariser on the dominant
        modality (weight ``mu``) acts in the first this-many epochs of the window (0: the
        whole window). The code has no such term (``mu = 0``).
      probe_heads: train the unimodal heads on gradient-stopped features (they do not touch
        the encoders) so that per-modality accuracies are reported; ``False``: no heads.

    Hyper-parameters (vmappable): ``alpha`` (``α``, CREMA-D script 2.0), ``mu`` (entropy weight, 0).
    """
    if rule not in PMR_RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {PMR_RULES}")
    if not 0.0 <= momentum <= 1.0 or not 0.0 < proto_fraction <= 1.0:
        raise ValueError(f"need 0 <= momentum <= 1 and 0 < proto_fraction <= 1, got {momentum}, {proto_fraction}")
    if modulation_end < modulation_start or entropy_epochs < 0:
        raise ValueError(f"need modulation_start <= modulation_end and entropy_epochs >= 0, got "
                         f"{modulation_start}, {modulation_end}, {entropy_epochs}")

    def in_window(epoch):
        return (jnp.asarray(epoch) >= modulation_start) & (jnp.asarray(epoch) <= modulation_end)

    def terms(model, batch, ctx):
        out = model(batch.inputs)
        names = list(out.features)
        entropy_on = in_window(ctx.epoch)
        if entropy_epochs:
            entropy_on &= ctx.epoch < modulation_start + entropy_epochs
        loss, coef = pmr_loss([out.features[m] for m in names], [ctx.state["prototypes"][m] for m in names],
                              batch.label, alpha=ctx.hparams["alpha"], rule=rule,
                              entropy_weight=ctx.hparams["mu"] * entropy_on, where=valid_of(batch) > 0)
        t = {"ce": ctx.loss(out.logits, batch.label), "pmr": loss}
        if probe_heads:
            probes = {m: model.unimodal(m, jax.lax.stop_gradient(z)) for m, z in out.features.items()}
            t["probe_ce"] = unimodal_loss(out._replace(unimodal_logits=probes), batch.label, ctx)
        return Terms(t, logs={f"pmr_coef/{m}": coef[i] for i, m in enumerate(names)})

    def init_state(model, batch):
        out = eval_view(model)(batch.inputs)
        k = _num_classes(out.logits)
        valid = batch.meta.get("valid")
        return {"prototypes": {m: class_means(*class_sums(z, batch.label, k, where=valid))
                               for m, z in out.features.items()}}

    def refresh(run, context):
        out, labels = context.outputs["train"], context.labels["train"]
        n = labels.shape[0]
        keep = np.sort(np.random.default_rng(context.epoch).permutation(n)[:max(1, math.ceil(proto_fraction * n))])
        k = _num_classes(out.logits)
        protos = {m: refresh_prototypes(out.features[m][keep], labels[keep], old, k, momentum, context.epoch > 0)
                  for m, old in run.state["prototypes"].items()}
        return run._replace(state={"prototypes": protos})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "pmr": in_window(ctx.epoch).astype(jnp.float32), "probe_ce": 1.0},
        hparams={"alpha": 2.0, "mu": 0.0},
        model=ModelSpec(fuse=True, unimodal_heads=probe_heads, pieces=("unimodal",) if probe_heads else ()),
        init_state=init_state,
        epoch_end=EpochHook(refresh, reads=lambda epoch, num_epochs: ("train",)),
    )
