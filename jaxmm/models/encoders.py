"""One encoder per modality, chosen by kind and built from the shape of one example.

Kinds:

* ``mlp``: an :class:`~jaxmm.models.mlp.MLP` on the input flattened after the batch
  axis (vectors, small images, sequences of the synthetic protocols);
* ``audio``: :class:`~jaxmm.models.resnet.AudioEncoder`, a ResNet-18 over a
  one-channel spectrogram (GeWu-Lab audio-visual protocol);
* ``visual``: :class:`~jaxmm.models.resnet.VisualEncoder`, a ResNet-18 over a clip
  of frames folded into the batch.

Every encoder has ``out_features``, the width of the feature vector it returns.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxmm.models.mlp import MLP
from jaxmm.models.resnet import AudioEncoder, VisualEncoder, audio_layout, visual_layout

ENCODER_KINDS = ("mlp", "audio", "visual")
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
"""Compute-dtype name -> the ``dtype`` modules take (``None``: float32, that of the parameters)."""


def compute_dtype(name: str):
    """The module ``dtype`` of a compute-dtype name.

    Raises:
      ValueError: for a name other than ``float32`` or ``bfloat16``.
    """
    if name not in DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def make_encoder(kind: str, shape: int | Sequence[int], *, hidden: Sequence[int] = (16,), dropout: float = 0.0,
                 init: str = "torch", dtype=None, bn_scale_std: float = 0.0, layout: str = "auto",
                 rngs: nnx.Rngs) -> nnx.Module:
    """Builds the encoder of one modality.

    Args:
      kind: one of :data:`ENCODER_KINDS`.
      shape: shape of one example (without the batch axis); an int is a vector width.
      hidden: ``mlp`` only: hidden widths (the output width is the last).
      dropout: ``mlp`` only: dropout rate.
      init: ``mlp`` only: Linear initialisation (see :func:`~jaxmm.models.mlp.linear`).
      dtype: computation dtype (``None`` or ``jnp.bfloat16``); parameters stay float32.
      bn_scale_std: ResNet kinds only: BatchNorm scale init std (see :class:`~jaxmm.models.resnet.ResNet18`).
      layout: ResNet kinds only: input layout, or ``"auto"`` to infer it from ``shape``
        (:func:`~jaxmm.models.resnet.audio_layout`, :func:`~jaxmm.models.resnet.visual_layout`).
      rngs: initialisation and dropout randomness.

    Returns:
      The encoder module (with ``out_features``).

    Raises:
      ValueError: for an unknown kind, or a shape the kind cannot read.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if kind == "mlp":
        if not hidden:
            raise ValueError("an mlp encoder needs at least one width in encoder_hidden")
        return MLP([math.prod(shape), *hidden], dropout=dropout, activate_output=True, init=init, dtype=dtype,
                   flatten=True, rngs=rngs)
    if kind == "audio":
        inferred = audio_layout(shape)  # also checks the rank
        layout = inferred if layout == "auto" else layout
        return AudioEncoder(layout=layout, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)
    if kind == "visual":
        inferred = visual_layout(shape)
        layout = inferred if layout == "auto" else layout
        return VisualEncoder(layout=layout, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)
    raise ValueError(f"unknown encoder kind {kind!r}; choose one of {ENCODER_KINDS}")
