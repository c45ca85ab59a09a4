"""One encoder per modality, chosen by kind and built from the shape of one example.

Kinds:

* ``mlp``: an :class:`~jaxmm.models.mlp.MLP` on the input flattened after the batch
  axis (vectors, small images, sequences of the synthetic protocols);
* ``audio``: :class:`~jaxmm.models.resnet.AudioEncoder`, a ResNet-18 over a
  one-channel spectrogram (GeWu-Lab audio-visual protocol);
* ``visual``: :class:`~jaxmm.models.resnet.VisualEncoder`, a ResNet-18 over a clip
  of frames folded into the batch;
* ``transformer``, ``lstm``, ``gru``, ``factorcl``: sequence encoders over a ``[T, D]``
  example (:mod:`jaxmm.models.sequence`): :class:`~jaxmm.models.sequence.TransformerEncoder`,
  :class:`~jaxmm.models.sequence.LSTMEncoder` (BTW's audio/video encoder with
  ``hidden=16, features=64``), :class:`~jaxmm.models.sequence.GRUEncoder` and SynIB's
  :func:`~jaxmm.models.sequence.factorcl_uni`.

The sequence kinds take keyword ``options`` (``ModelConfig.encoder_options[modality]``):
their constructor's keyword arguments other than ``init``, ``dtype`` and ``rngs``, listed
by :func:`encoder_options`; ``padding`` (default ``left``) says how each encoder finds the
valid steps (:data:`~jaxmm.models.sequence.PADDINGS`). The other kinds take none.

Every encoder has ``out_features``, the width of the feature vector it returns. With
``projection > 0`` the encoder is wrapped in :class:`Projected` (BTW's ``ModalProjection``).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
from flax import nnx

from jaxmm.models.mlp import MLP
from jaxmm.models.resnet import AudioEncoder, VisualEncoder, audio_layout, visual_layout
from jaxmm.models.sequence import GRUEncoder, LSTMEncoder, TransformerEncoder, factorcl_uni

SEQUENCE_ENCODERS = {"transformer": TransformerEncoder, "lstm": LSTMEncoder, "gru": GRUEncoder,
                     "factorcl": factorcl_uni}
"""Sequence kind -> its constructor (called with the per-step width, and ``max_len`` where it takes one)."""
ENCODER_KINDS = ("mlp", "audio", "visual", *SEQUENCE_ENCODERS)
_NOT_OPTIONS = ("in_features", "max_len", "init", "dtype", "rngs")
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


def encoder_options(kind: str) -> dict[str, object]:
    """The options of an encoder kind and their defaults (empty for ``mlp``, ``audio``, ``visual``).

    Raises:
      ValueError: for an unknown kind.
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; choose one of {ENCODER_KINDS}")
    if kind not in SEQUENCE_ENCODERS:
        return {}
    build = SEQUENCE_ENCODERS[kind]
    parameters = inspect.signature(build.__init__ if isinstance(build, type) else build).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _NOT_OPTIONS}


def check_encoder_options(kind: str, options: Mapping[str, object]) -> None:
    """Checks that every option name is one the encoder kind takes.

    Raises:
      ValueError: for an unknown kind or option name (the message lists the valid options).
    """
    valid = encoder_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"encoder kind {kind!r} has no option(s) {unknown}; valid options: "
                         f"{sorted(valid) if valid else 'none (set the ModelConfig fields instead)'}")


class Projected(nnx.Module):
    """An encoder followed by BTW's ``ModalProjection``: ``Linear(out, p) → ReLU → Linear(p, p)``.

    Args:
      encoder: the encoder (with ``out_features``).
      width: projection width ``p`` (the new ``out_features``).
      init: Linear initialisation (see :func:`~jaxmm.models.mlp.linear`).
      dtype: compute dtype.
      rngs: initialisation randomness.
    """

    def __init__(self, encoder: nnx.Module, width: int, *, init: str = "torch", dtype=None, rngs: nnx.Rngs):
        self.encoder = encoder
        self.projection = MLP([encoder.out_features, width, width], init=init, dtype=dtype, rngs=rngs)
        self.out_features = width

    def __call__(self, x):
        return self.projection(self.encoder(x))


def make_encoder(kind: str, shape: int | Sequence[int], *, hidden: Sequence[int] = (16,), dropout: float = 0.0,
                 init: str = "torch", dtype=None, bn_scale_std: float = 0.0, layout: str = "auto",
                 options: Mapping[str, object] | None = None, projection: int = 0, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the encoder of one modality.

    Args:
      kind: one of :data:`ENCODER_KINDS`.
      shape: shape of one example (without the batch axis); an int is a vector width.
      hidden: ``mlp`` only: hidden widths (the output width is the last).
      dropout: ``mlp`` only: dropout rate (sequence kinds take theirs from ``options``).
      init: Linear initialisation of ``mlp``, ``transformer``, the output Linear of ``lstm``/``gru``
        and the projection (see :func:`~jaxmm.models.mlp.linear`).
      dtype: computation dtype (``None`` or ``jnp.bfloat16``); parameters stay float32.
      bn_scale_std: ResNet kinds only: BatchNorm scale init std (see :class:`~jaxmm.models.resnet.ResNet18`).
      layout: ResNet kinds only: input layout, or ``"auto"`` to infer it from ``shape``
        (:func:`~jaxmm.models.resnet.audio_layout`, :func:`~jaxmm.models.resnet.visual_layout`).
      options: sequence kinds only: keyword options (see :func:`encoder_options`).
      projection: width of a :class:`Projected` projection after the encoder (0: none).
      rngs: initialisation and dropout randomness.

    Returns:
      The encoder module (with ``out_features``).

    Raises:
      ValueError: for an unknown kind or option, or a shape the kind cannot read.
    """
    if not isinstance(projection, int) or projection < 0:
        raise ValueError(f"projection must be an int >= 0 (0: none), got {projection!r}")
    encoder = _encoder(kind, shape, hidden=hidden, dropout=dropout, init=init, dtype=dtype, bn_scale_std=bn_scale_std,
                       layout=layout, options=dict(options or {}), rngs=rngs)
    return Projected(encoder, projection, init=init, dtype=dtype, rngs=rngs) if projection else encoder


def _encoder(kind, shape, *, hidden, dropout, init, dtype, bn_scale_std, layout, options, rngs) -> nnx.Module:
    """The encoder of :func:`make_encoder` before any projection."""
    check_encoder_options(kind, options)
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if kind in SEQUENCE_ENCODERS:
        if len(shape) != 2:
            raise ValueError(f"a {kind} encoder reads [T, D] sequences; got an example of shape {shape} "
                             f"(use kind 'mlp' to flatten it)")
        length, width = shape
        if options.get("padding") == "mask":
            width -= 1  # the last channel is the validity flag
            if width < 1:
                raise ValueError(f"padding='mask' needs feature channels before the flag; got {shape}")
        sizes = (width,) if kind in ("lstm", "gru") else (width, length)
        extra = {} if kind == "factorcl" else {"init": init}
        return SEQUENCE_ENCODERS[kind](*sizes, dtype=dtype, rngs=rngs, **extra, **options)
    if kind == "mlp":
        if not hidden:
            raise ValueError("an mlp encoder needs at least one width in encoder_hidden")
        return MLP([math.prod(shape), *hidden], dropout=dropout, activate_output=True, init=init, dtype=dtype,
                   flatten=True, rngs=rngs)
    if kind == "audio":
        inferred = audio_layout(shape)  # also checks the rank
        layout = inferred if layout == "auto" else layout
        return AudioEncoder(layout=layout, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)
    inferred = visual_layout(shape)  # kind == "visual"
    layout = inferred if layout == "auto" else layout
    return VisualEncoder(layout=layout, dtype=dtype, bn_scale_std=bn_scale_std, rngs=rngs)
