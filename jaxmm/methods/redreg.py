"""RedReg: adaptive redundancy regulation of the dominant encoder (Yang et al., arXiv 2511.13755).

Loss ``CE(fused) + λ_uni Σ_m CE(h_m)`` (λ_uni = 1: the code back-propagates all
three). Every step, ``terms`` also observes, per modality, the confidence
``p_m`` (batch mean true-class probability of the unimodal head), the
redundancy score of two noisy views of the input (eval-mode encoder, no
gradient) and the cross-modal cosine similarity of the features, and folds
them into the redundant-phase monitor
(:mod:`jaxmm.monitors.redundancy_phase`: growth rate over ``window`` steps, EMA
normalisation, ``r_m``). The gradient transformation
(:func:`jaxmm.transforms.redreg.redreg`) then adds ``β̃ · d⊥`` to every tensor
of the dominant encoder, ``d⊥`` the drift from the epoch-start parameters
projected orthogonally to the joint gradient ``g`` of the summed losses, which
is the trainer's combined gradient (no per-term gradients are needed).

Paper vs official code (xia-zhe/RedReg ``main_RedReg.py``); paper defaults:

* ``gamma`` 0.5 (paper's best; code 0.6);
* ``gate_inclusive=True``: ``sim ≥ τ`` (paper; code ``sim > τ``);
* ``modal_drop=False`` (code: True, annealed modality dropout, :func:`drop_modalities`);
* ``clip_views=()`` (code: the visual views are clamped to [0, 1]).

Through the model API the redundancy score reads the encoder *output* (the
pooled feature of a ResNet encoder; the code reads the map before pooling);
integer inputs (``uint8`` frames) get rounded noisy views in their own dtype
(:func:`noisy_input_views`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmm.methods import _masking
from jaxmm.methods.base import EpochHook, GradientTransform, Method, ModelSpec, Terms, per_modality, unimodal_loss
from jaxmm.methods.registry import register
from jaxmm.monitors.redundancy_phase import (co_information_similarity, init_redundancy_phase, noisy_views,
                                             redundancy_score, update_redundancy_phase)
from jaxmm.monitors.scores import confidence
from jaxmm.transforms.redreg import redreg as redreg_transform


def drop_probability(epoch, num_epochs):
    """Annealed modality-dropout rate of the code: ``0.6 − 0.5 · min(1, e / max(1, ⌊0.3 E⌋))``."""
    ramp = jnp.maximum(1, jnp.floor(0.3 * jnp.asarray(num_epochs, jnp.float32)))
    return 0.6 - 0.5 * jnp.minimum(1.0, jnp.asarray(epoch, jnp.float32) / ramp)


def drop_modalities(key, inputs, modalities, p):
    """Zeroes one whole modality of the batch with probability ``p`` (each equally likely, as in the code).

    With ``u ~ U(0, 1)``, modality ``i`` (in ``modalities`` order) is zeroed when
    ``i·p/M ≤ u < (i+1)·p/M``: for two modalities, the first if ``u < p/2``, the
    second if ``p/2 ≤ u < p``, as in the code (audio first). The input is zeroed as
    stored: integer frames become black frames, where the code zeroes the
    normalised tensor.
    """
    u = jax.random.uniform(key)
    slot = jnp.floor(u / (p / len(modalities)))
    index = {m: i for i, m in enumerate(modalities)}
    return {m: jnp.where((u < p) & (slot == index[m]), jnp.zeros_like(x), x) if m in index else x
            for m, x in inputs.items()}


def _eval_encoding(model, modality):
    """``x -> feature`` of ``modality`` on an eval-mode copy of ``model`` (no BatchNorm updates, no dropout)."""
    def encode(mod, x):
        mod.eval()
        return mod.encode_one(modality, x)

    return _masking.pure(model, encode)


def noisy_input_views(key, x, sigma: float, clip: bool, integer_scale: float):
    """Two noisy views of one modality's input batch.

    Floating-point inputs: ``x + σ ε_k`` (clamped to [0, 1] if ``clip``, the code's
    visual quirk). Integer inputs (``uint8`` frames that the encoder normalises
    itself): ``round(x + σ · integer_scale · ε_k)`` kept in the dtype's range and
    dtype, so the encoder reads them as usual; ``integer_scale`` 57.6 = 255 × the
    mean ImageNet std puts σ in normalised units. The monitor only reads ratios of
    redundancy scores, so the input units do not matter.
    """
    if jnp.issubdtype(x.dtype, jnp.integer):
        info = jnp.iinfo(x.dtype)
        views = noisy_views(key, x.astype(jnp.float32), sigma * integer_scale)
        return tuple(jnp.clip(jnp.round(v), info.min, info.max).astype(x.dtype) for v in views)
    return noisy_views(key, x, sigma, (0.0, 1.0) if clip else None)


def redundancy_scores(model, inputs, key, valid, *, sigma: float, clip_views=(), integer_scale: float = 57.6):
    """``[M]`` raw redundancy scores ``red_m`` of two noisy views of each modality's input.

    Raises:
      ValueError: ``clip_views`` names a modality the model lacks.
    """
    unknown = set(clip_views) - set(model.modalities)
    if unknown:
        raise ValueError(f"redreg: clip_views names modalities {sorted(unknown)} the model lacks; "
                         f"it has {model.modalities}")
    scores = []
    for m, k in zip(model.modalities, jax.random.split(key, len(model.modalities))):
        v1, v2 = noisy_input_views(k, inputs[m], sigma, m in clip_views, integer_scale)
        encode = _eval_encoding(model, m)
        scores.append(redundancy_score(encode(v1), encode(v2), v1, v2, valid))
    return jnp.stack(scores)


@register("redreg")
def redreg(num_epochs: int = 0, window: int = 10, gamma: float = 0.5, momentum: float = 0.9,
           threshold: float = 0.15, kappa: float = 0.9, tau_min: float = 0.2, tau_max: float = 0.5,
           gate_inclusive: bool = True, sigma: float = 0.03, clip_views: tuple = (),
           integer_scale: float = 57.6, modal_drop: bool = False) -> Method:
    """RedReg: orthogonal-complement suppression of the dominant encoder in its redundant phase.

    Args:
      num_epochs: ``E`` of the gate schedule ``τ(e)`` and of the dropout annealing;
        0 (default): the run's configured number of epochs, read by the epoch hook
        (``τ(0) = τ_min`` whatever ``E``, so the first epoch needs no value).
      window: growth-rate window ``W`` in steps (10).
      gamma: weight γ of the growth rate in ``r_m`` (paper 0.5, code 0.6).
      momentum: EMA momentum of the redundancy normalisation (0.9).
      threshold: trigger ``R``: intervene when ``r_{m*} > R`` (0.15).
      kappa: strength scale κ of ``β = exp(κ·tanh(p_{m*} − p_{m'}))`` (0.9).
      tau_min, tau_max: gate threshold at the first and last epoch (0.2, 0.5).
      gate_inclusive: ``sim ≥ τ`` (paper) or ``sim > τ`` (code, False).
      sigma: noise std of the two views (0.03).
      clip_views: modalities whose (floating-point) noisy views are clamped to [0, 1]
        (code: the visual one).
      integer_scale: noise scale of integer inputs, see :func:`noisy_input_views`.
      modal_drop: the code's annealed modality dropout (see :func:`drop_modalities`).

    Hyper-parameters (vmappable): ``lam_uni`` (weight of the unimodal CE terms, 1).
    Logged per step: ``confidence/<m>`` (``p_m``), ``redundancy/<m>`` (the
    indicator ``r_m``) and ``similarity``.

    Raises:
      ValueError: an option out of range.
    """
    if window < 1 or num_epochs < 0:
        raise ValueError(f"redreg: window must be >= 1 and num_epochs >= 0 (0: the run's epochs); "
                         f"got window={window}, num_epochs={num_epochs}")
    if not (0.0 <= momentum < 1.0 and sigma > 0.0 and gamma >= 0.0 and integer_scale > 0.0):
        raise ValueError(f"redreg: need 0 <= momentum < 1, sigma > 0, gamma >= 0 and integer_scale > 0; got "
                         f"momentum={momentum}, sigma={sigma}, gamma={gamma}, integer_scale={integer_scale}")
    if isinstance(clip_views, str) or not all(isinstance(m, str) for m in clip_views):
        raise ValueError(f"redreg: clip_views must be a tuple of modality names, e.g. ('visual',); got {clip_views!r}")
    gate = dict(num_epochs=num_epochs or None, threshold=threshold, kappa=kappa, tau_min=tau_min, tau_max=tau_max,
                gate_inclusive=gate_inclusive)
    redreg_transform(("m0", "m1"), labels=None, **gate)  # validates the gate options now

    def total_epochs(ctx):
        return num_epochs or ctx.state["num_epochs"]

    def terms(model, batch, ctx):
        mods, valid = model.modalities, batch.meta.get("valid")
        drop_key, view_key = jax.random.split(ctx.rng)
        inputs = batch.inputs
        if modal_drop:
            inputs = drop_modalities(drop_key, inputs, mods, drop_probability(ctx.epoch, total_epochs(ctx)))
        out = model(inputs)
        conf = jnp.stack([confidence(out.unimodal_logits[m], batch.label, valid) for m in mods])
        red = redundancy_scores(model, batch.inputs, view_key, valid, sigma=sigma, clip_views=clip_views,
                                integer_scale=integer_scale)
        monitor = update_redundancy_phase(ctx.state["monitor"], confidence=conf, redundancy=red,
                                          epoch=ctx.epoch, gamma=gamma, momentum=momentum)
        similarity = co_information_similarity([out.features[m] for m in mods], valid)
        confidences = {m: conf[i] for i, m in enumerate(mods)}
        indicators = {m: monitor.indicator[i] for i, m in enumerate(mods)}
        signals = {"confidence": confidences, "redundancy": indicators, "similarity": similarity,
                   **({} if num_epochs else {"num_epochs": ctx.state["num_epochs"]})}
        logs = {"similarity": similarity, **{f"confidence/{m}": c for m, c in confidences.items()},
                **{f"redundancy/{m}": r for m, r in indicators.items()}}
        t = {"ce": ctx.loss(out.logits, batch.label), "uni_ce": unimodal_loss(out, batch.label, ctx)}
        return Terms(t, state={**ctx.state, "monitor": monitor}, signals=signals, logs=logs)

    def init_state(model, batch):
        return {"monitor": init_redundancy_phase(len(model.modalities), window),
                "num_epochs": jnp.asarray(max(num_epochs, 1), jnp.int32)}

    def record_num_epochs(run, context):
        return run._replace(state={**run.state, "num_epochs": jnp.full_like(run.state["num_epochs"],
                                                                            context.num_epochs)})

    return Method(
        terms=terms,
        term_weights=lambda ctx: {"ce": 1.0, "uni_ce": ctx.hparams["lam_uni"]},
        hparams={"lam_uni": 1.0},
        model=ModelSpec(fuse=True, unimodal_heads=True, pieces=("encode_one",)),
        init_state=init_state,
        transform=GradientTransform(
            lambda modalities, labels: redreg_transform(modalities, labels=labels, **gate),
            metrics=lambda state, modalities: per_modality("beta", state.beta, modalities)),
        epoch_end=None if num_epochs else EpochHook(record_num_epochs),
    )
