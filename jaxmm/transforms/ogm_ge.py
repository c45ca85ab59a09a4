"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Per step, with ``s_m`` the batch sum of the true-class softmax probability of
modality ``m``'s logits (:func:`jaxmm.monitors.scores.discrepancy_score`):

* discrepancy ratio ``ρ_m = s_m / Σ_{k≠m} s_k`` (two modalities:
  ``ρ_v = s_v / s_a``, ``ρ_a = 1/ρ_v``);
* the modality with the largest ratio is slowed down,
  ``k = 1 − tanh(α · relu(ρ − offset))`` (Eq. 10, ``offset = 0``), every other
  modality keeps ``k = 1``;
* inside the modulation window every modulated tensor of modality ``m``
  becomes ``k_m · g + ε`` with ``ε ~ N(0, σ²)``, ``σ = std(g) + 1e-8`` the
  unbiased standard deviation of that tensor's unscaled gradient (OGM-GE; plain
  OGM without the noise). The noise is added to every modality, including the
  ones with ``k = 1``.

Code behaviours (official repo GeWu-Lab/OGM-GE_CVPR2022, ``main.py``):

* The code modulates only the conv kernels (4-D tensors) of the encoders
  (``tensors="conv"``: nothing at all on MLP encoders). The default
  ``tensors="kernels"`` modulates every weight tensor (ndim >= 2: conv and
  linear kernels; the same set on the official ResNet encoders, which have no
  linear layer, and the analogue for MLP encoders); ``tensors="all"`` every
  leaf of the group. BalanceBenchmark modulates every
  non-bias parameter whose name contains the modality (heads and BN scales
  included): express that with the labels and ``tensors="all"``.
* The paper samples the noise "based on the covariance of the gradient"; the
  code (and this transform) uses the isotropic per-tensor std.
* More than two modalities: ``ρ_m`` against the *sum* of the others and only
  the arg-max modality modulated, as in the official repo's three-modality
  branch and BalanceBenchmark. For two modalities this is exactly Eq. 10 (the
  arg-max ratio is always ≥ 1; a tie modulates the first modality of
  ``modalities``, as the code's ``else`` branch does for audio).
* Chain it before plain SGD, as the official code does. Adam's ``m/√v``
  is invariant to a constant gradient scale, so in front of Adam a slowly
  varying ``k`` is normalised away and only the noise and the changes of
  ``k`` act (a test shows both cases).
* ``ratio_offset=1`` gives the continuous variant ``1 − tanh(α·relu(ρ − 1))``
  (no jump at ρ = 1); it is not the paper's or the code's rule.
"""
from __future__ import annotations

import itertools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm._checks import check_choice
from jaxmm.transforms import _common, _tree

_NAME = "ogm_ge"
TENSORS = ("conv", "kernels", "all")


class OGMGEState(NamedTuple):
    """State of :func:`ogm_ge`.

    Attributes:
      key: raw uint32 PRNG key for the generalisation noise, split every step.
      coefficients: ``[M]`` float32 coefficients ``k_m`` applied in the last step
        (1 outside the modulation window; for logging).
    """

    key: jax.Array
    coefficients: jax.Array


def ogm_ge_coefficients(scores: jax.Array, alpha: Any, ratio_offset: Any = 0.0) -> jax.Array:
    """OGM-GE modulation coefficients from per-modality discrepancy scores.

    Args:
      scores: ``[M]`` scores ``s_m`` (batch sums of true-class probabilities).
      alpha: modulation strength α > 0.
      ratio_offset: subtracted from the ratio inside the ReLU (0: Eq. 10).

    Returns:
      ``[M]`` float32 coefficients: ``1 − tanh(α·relu(ρ_max − offset))`` for
      the (first) arg-max-ratio modality, 1 for the others.
    """
    scores = jnp.asarray(scores, jnp.float32)
    others = jnp.sum(scores) - scores
    ratio = scores / jnp.maximum(others, jnp.finfo(jnp.float32).tiny)
    top = jnp.argmax(ratio)
    k_top = 1.0 - jnp.tanh(alpha * jax.nn.relu(ratio[top] - ratio_offset))
    return jnp.where(jnp.arange(scores.shape[0]) == top, k_top, 1.0)


def ogm_ge(
    modalities: Sequence[str],
    *,
    labels: _tree.Labels,
    alpha: float = 0.8,
    generalization: bool = True,
    tensors: str = "kernels",
    window: tuple[int, int] | None = (0, 50),
    ratio_offset: float = 0.0,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """OGM-GE gradient modulation of the modality groups.

    Args:
      modalities: the modality group labels, e.g. ``("audio", "visual")``;
        order breaks ties between equal ratios.
      labels: labels spec (pytree of str or callable, as for
        :func:`optax.partition`); leaves labelled with a modality name are that
        modality's encoder, any other label (``"fusion"``, ``"head"``, ...) is
        left untouched.
      alpha: modulation strength α (official CREMA-D recommendation 0.8;
        VGGSound example 0.1; BalanceBenchmark 0.3).
      generalization: add the Gaussian generalisation noise (OGM-GE); False is OGM.
      tensors: which leaves of a modality group are modulated: ``"kernels"``
        (default: ndim >= 2, conv and linear kernels), ``"conv"`` (4-D conv
        kernels only, the official code; a no-op on MLP encoders) or ``"all"``.
      window: inclusive ``(first, last)`` epochs of modulation (official 0..50;
        BalanceBenchmark 10..80); ``None`` modulates always.
      ratio_offset: see :func:`ogm_ge_coefficients`.
      seed: seed of the noise PRNG stream.

    Returns:
      A transformation whose ``update`` takes the keyword extra args
      ``scores`` (``{modality: s_m}``) and ``epoch`` (int; unused when
      ``window`` is None), and optionally ``alpha`` (a traced value replacing
      the factory's, for runs vmapped over α) and ``key`` (a PRNG key for this
      step's noise instead of the state's stream, e.g. a per-run key). Other
      extra args are ignored.

    Raises:
      ValueError: for fewer than two modalities, a non-positive ``alpha``, a
        negative ``ratio_offset``, an unknown ``tensors`` or a malformed
        ``window``; at init, for a modality that labels no parameter.
    """
    modalities = _common.check_modalities(_NAME, modalities)
    _common.check_positive(_NAME, "alpha", alpha)
    _common.check_positive(_NAME, "ratio_offset", ratio_offset, allow_zero=True)
    _common.check_window(_NAME, window)
    check_choice("tensors", tensors, TENSORS, owner=_NAME)
    min_ndim = {"conv": 4, "kernels": 2, "all": 0}[tensors]
    index = {m: i for i, m in enumerate(modalities)}

    def modulated(label: str, g: jax.Array) -> bool:
        return label in index and (g.ndim == 4 if tensors == "conv" else g.ndim >= min_ndim)

    def init_fn(params):
        _common.check_groups_present(_NAME, modalities, _tree.leaf_labels(labels, params))
        return OGMGEState(jax.random.PRNGKey(seed), jnp.ones(len(modalities), jnp.float32))

    def update_fn(updates, state, params=None, **extra_args):
        del params
        scores = _common.stack_modalities(
            _common.required(extra_args, "scores", _NAME, "{modality: batch sum of p(y|x_m)}"),
            modalities, "scores", _NAME)
        active = _common.in_window(window, extra_args, _NAME)
        coeffs = ogm_ge_coefficients(scores, extra_args.get("alpha", alpha), ratio_offset)
        flat, flat_labels = _tree.flatten(updates, updates), _tree.leaf_labels(labels, updates)
        targets = [i for i, (lab, g) in enumerate(zip(flat_labels, flat))
                   if lab is not None and modulated(lab, g)]
        key, noise_key = jax.random.split(state.key)
        if extra_args.get("key") is not None:
            noise_key = extra_args["key"]
        noise = {}
        if generalization and targets:
            sizes = [flat[i].size for i in targets]
            draws = jnp.split(jax.random.normal(noise_key, (sum(sizes),), jnp.float32),
                              list(itertools.accumulate(sizes))[:-1])
            noise = {i: z.reshape(flat[i].shape) for i, z in zip(targets, draws)}

        def modulate(i: int) -> jax.Array:
            g = flat[i]
            g32 = g.astype(jnp.float32)
            new = coeffs[index[flat_labels[i]]] * g32
            if i in noise:
                std = jnp.std(g32, ddof=1) if g.size > 1 else jnp.zeros((), jnp.float32)
                new = new + (std + 1e-8) * noise[i]
            return jnp.where(active, new, g32).astype(g.dtype)

        out = [modulate(i) if i in targets else g for i, g in enumerate(flat)]
        applied = jnp.where(active, coeffs, 1.0)
        return _tree.unflatten(updates, out), OGMGEState(key, applied)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
