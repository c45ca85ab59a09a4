"""InfoReg: adaptive unimodal regulation in the prime learning window (Huang et al., CVPR 2025).

Per step, with ``s_m`` the batch sum of the true-class softmax probability of
modality ``m``'s unimodal logits (:func:`jaxmm.monitors.scores.discrepancy_score`):

* the strictly dominant modality ``m*`` (``s_{m*}`` above every other score)
  gets ``β_{m*} = c_{m*} · exp(tanh(s_{m*} − s_{runner-up}))`` while it is in
  its prime learning window (``k_e > threshold``, from
  :mod:`jaxmm.monitors.information_acquisition`); every other modality gets 0;
* every leaf of modality ``m``'s group: ``g ← g + β_m · (θ − θ_e)``, the
  gradient of ``(β_m/2)‖θ − θ_e‖²`` with ``θ_e`` the parameters at the start
  of the epoch (snapshot held in the state, refreshed when the ``epoch``
  extra arg changes);
* the Fisher-trace monitor accumulates ``Σ_W mean(g_W²)`` of the *modified*
  gradient over the group's weight tensors (ndim ≥ 2).

Paper vs official code (GeWu-Lab/InfoReg_CVPR2025, ``main.py``):

* The paper tracks the window of the information-sufficient (dominant)
  modality; the code always reads the **audio** encoder's trace. Default
  (``monitored=None``): the dominant modality's own trace; ``monitored="audio"``
  reproduces the code.
* The code's coefficient scales are CREMA-D-tuned (``{"audio": 0.95,
  "visual": 0.1}``); the default here is 1 for every modality.
* Two modalities in the code; here the margin is taken over the runner-up,
  which is the code's rule for two.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm.monitors import information_acquisition as ia
from jaxmm.transforms import _common, _tree

_NAME = "inforeg"


class InfoRegState(NamedTuple):
    """State of :func:`inforeg`.

    Attributes:
      epoch: int32, the epoch of ``snapshot`` (−1 before the first step).
      snapshot: the modality groups' parameters at the start of ``epoch``
        (other leaves are :class:`optax.MaskedNode`).
      monitor: the information-acquisition monitor state.
      beta: ``[M]`` float32 regulation strengths of the last step (for logging).
    """

    epoch: jax.Array
    snapshot: Any
    monitor: ia.InformationAcquisitionState
    beta: jax.Array


def inforeg(
    modalities: Sequence[str],
    *,
    labels: _tree.Labels,
    scales: float | Mapping[str, float] = 1.0,
    threshold: float = 0.05,
    window: int = 10,
    monitored: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """InfoReg proximal regulation of the dominant modality's encoder.

    Args:
      modalities: modality group labels, e.g. ``("audio", "visual")``.
      labels: labels spec (pytree of str or callable, as for
        :func:`optax.partition`); leaves labelled with a modality are its
        encoder, others (heads, fusion) are untouched.
      scales: coefficient scale ``c_m`` per modality (one float for all, or a
        mapping); official CREMA-D values ``{"audio": 0.95, "visual": 0.1}``.
      threshold: the window is open while ``k_e > threshold`` (official 0.05).
      window: epochs compared by the acquisition rate (official 10).
      monitored: modality whose trace decides the window for everyone
        (official code: ``"audio"``); ``None`` uses the dominant modality's own.

    Returns:
      A transformation whose ``update`` needs ``params`` and the keyword extra
      args ``scores`` (``{modality: s_m}``) and ``epoch`` (int). Other extra
      args are ignored.

    Raises:
      ValueError: for fewer than two modalities, negative scales or
        threshold, ``window < 1``, or an unknown ``monitored`` modality; at
        init, for a modality that labels no parameter.
    """
    modalities = _common.check_modalities(_NAME, modalities)
    scale_map = scales if isinstance(scales, Mapping) else {m: scales for m in modalities}
    scale_vec = _common.stack_modalities(scale_map, modalities, "scales", _NAME)
    for m in modalities:
        _common.check_positive(_NAME, f"scales[{m!r}]", scale_map[m], allow_zero=True)
    _common.check_positive(_NAME, "threshold", threshold, allow_zero=True)
    _common.check(window >= 1, _NAME, f"`window` must be >= 1, got {window!r}.")
    _common.check(monitored is None or monitored in modalities, _NAME,
                  f"`monitored` must be None or one of {modalities}, got {monitored!r}.")
    index = {m: i for i, m in enumerate(modalities)}

    def init_fn(params):
        _common.check_groups_present(_NAME, modalities, _tree.leaf_labels(labels, params))
        return InfoRegState(
            epoch=jnp.full((), -1, jnp.int32),
            snapshot=_tree.keep_groups(labels, params, modalities),
            monitor=ia.init_information_acquisition(len(modalities), window),
            beta=jnp.zeros((len(modalities),), jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _common.require_params(params, _NAME)
        scores = _common.stack_modalities(
            _common.required(extra_args, "scores", _NAME, "{modality: batch sum of p(y|x_m)}"),
            modalities, "scores", _NAME)
        epoch = _common.required(extra_args, "epoch", _NAME, "current epoch, an int")
        snapshot, epoch, _ = _tree.refresh_on_new_epoch(state.snapshot, state.epoch, params, epoch)
        monitor = ia.observe_epoch(state.monitor, epoch)

        is_dom, margin = _common.dominance(scores)
        rate = monitor.rate if monitored is None else jnp.broadcast_to(
            monitor.rate[index[monitored]], monitor.rate.shape)
        open_window = rate > threshold
        beta = jnp.where(is_dom & open_window, scale_vec * jnp.exp(jnp.tanh(margin)), 0.0)

        def regulate(label, g, theta, theta0):
            if label not in index:
                return g
            pull = theta.astype(jnp.float32) - theta0.astype(jnp.float32)
            return (g.astype(jnp.float32) + beta[index[label]] * pull).astype(g.dtype)

        new_updates = _tree.map_labelled(regulate, labels, updates, params, snapshot)
        flat, flat_labels = _tree.flatten(new_updates, new_updates), _tree.leaf_labels(labels, new_updates)
        fisher = jnp.stack([
            ia.fisher_term([g for g, lab in zip(flat, flat_labels) if lab == m and g.ndim >= 2])
            for m in modalities])
        return new_updates, InfoRegState(epoch, snapshot, ia.accumulate(monitor, fisher), beta)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
