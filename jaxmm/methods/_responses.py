"""Per-modality responses of the fused head, as the gradient-modulation baselines derive them.

* :func:`fusion_slices` — the unimodal logits of OGM-GE and InfoReg. The
  official code splits the concat head ``W [a; v] + b`` into
  ``out_a = W[:, :d_a] a + b/2`` and ``out_v = W[:, d_a:] v + b/2``. Through the
  model API that is ``fuse(only m) − (1 − 1/M) · fuse(none)``, where "only m"
  zeroes every other modality's feature and "none" zeroes all of them: exact for
  a linear concat head (``W_m x_m + b/M``, the slices summing to the fused
  logits); for OGM-GE's ``sum`` fusion it gives ``W_m x_m + (Σ_k b_k)/M``
  instead of the code's ``W_m x_m + b_m`` (a constant shift of the logits); for
  a nonlinear fused head it is the head's response to modality ``m`` alone.
* :func:`masked_input_logits` — AGM's masked forward passes: the fused logits
  with the inputs of the absent modalities zeroed, the model in evaluation
  mode (BatchNorm running statistics, no dropout) and gradients kept. An absent
  modality's input is zero after normalisation (for ``uint8`` frames: the
  ImageNet mean colour, not black), as the official code zeroes normalised tensors.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx


def fusion_slices(model, features: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-modality logits ``fuse(only m) − (1 − 1/M)·fuse(none)`` (the concat-head slices).

    Args:
      model: a multimodal classifier with a fused head.
      features: modality -> ``[B, D_m]`` encoder features.

    Returns:
      modality -> ``[B, K]`` logits, differentiable in the features and the head.
    """
    zeros = {m: jnp.zeros_like(f) for m, f in features.items()}
    share = 1.0 - 1.0 / len(features)
    base = model.fuse(zeros)
    return {m: model.fuse({**zeros, m: features[m]}) - share * base for m in model.modalities}


def eval_view(model):
    """``model`` in evaluation mode, sharing its (possibly traced) parameters.

    Gradients flow through the view into the original parameters; the view does not update
    BatchNorm statistics or draw dropout masks. Uses ``nnx.view`` where the installed Flax has
    it (no copy of the graph), else an eval-mode copy.
    """
    if hasattr(nnx, "view"):
        return nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state, copy=True)
    copy.eval()
    return copy


def zero_input(x: jax.Array) -> jax.Array:
    """One all-zero example shaped like ``x[:1]``: the encoder's input after normalisation is zero.

    Integer inputs (``uint8`` frames, normalised inside the encoder) become float zeros,
    which the encoders read as already normalised, as the official code zeroes
    the normalised tensor.
    """
    dtype = jnp.float32 if jnp.issubdtype(x.dtype, jnp.integer) else x.dtype
    return jnp.zeros((1, *x.shape[1:]), dtype)


def masked_input_logits(model, inputs: Mapping[str, jax.Array],
                        subsets: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], jax.Array]:
    """Fused logits of evaluation-mode passes with the inputs outside each subset zeroed.

    In evaluation mode the encoders act on each example alone, so every encoder
    runs once on its real input and once on a single zero example (broadcast to
    the batch); each subset then costs one pass of the fused head.

    Args:
      model: a multimodal classifier with a fused head (any mode; an eval view is used).
      inputs: modality -> ``[B, ...]`` inputs.
      subsets: tuples of the present modalities.

    Returns:
      ``{subset: [B, K] logits}``, differentiable in the parameters.
    """
    view = eval_view(model)
    present = {m: view.encode_one(m, inputs[m]) for m in view.modalities}
    absent = {m: jnp.broadcast_to(view.encode_one(m, zero_input(inputs[m])), f.shape) for m, f in present.items()}
    return {tuple(s): view.fuse({m: present[m] if m in s else absent[m] for m in view.modalities})
            for s in subsets}
