"""The generic multimodal classifier every method trains: encoders → fusion → heads.

One class serves every protocol: a small MLP per modality for the synthetic
benchmarks, two ResNet-18s (audio spectrogram, visual frames) for the GeWu-Lab
audio-visual protocol, sequence encoders (Transformer, LSTM, GRU, SynIB's FactorCL)
for ``[T, D]`` feature sequences such as MultiBench's (:mod:`jaxmm.models.sequence`),
optionally each followed by BTW's projection, or any mix, with concatenation, sum,
FiLM or gated fusion (:mod:`jaxmm.models.fusion`) under an MLP head. :class:`ModelConfig` names an
encoder kind per modality (:mod:`jaxmm.models.encoders`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.encoders import DTYPES, ENCODER_KINDS, check_encoder_options, compute_dtype, make_encoder
from jaxmm.models.fusion import FUSIONS, make_fusion
from jaxmm.models.mlp import INITS, MLP


class ModelOutput(NamedTuple):
    """What a forward pass returns.

    Attributes:
      logits: ``[B, K]`` fused prediction (``K = 1`` for a single-logit binary head);
        ``None`` for models without a fusion head (ensembles, unimodal models).
      unimodal_logits: modality -> ``[B, K]`` unimodal head predictions (empty if no heads).
      features: modality -> ``[B, D_m]`` encoder outputs.
    """

    logits: jax.Array
    unimodal_logits: dict[str, jax.Array]
    features: dict[str, jax.Array]


@dataclasses.dataclass
class ModelConfig:
    """The multimodal classifier: encoder kinds, fusion and head sizes, precision.

    The defaults are the small MLP model of the synthetic protocols;
    :func:`jaxmm.train.protocols.protocol` gives the audio-visual ones.

    Attributes:
      encoders: modality -> encoder kind (``mlp``, ``audio``, ``visual``, ``transformer``,
        ``lstm``, ``gru``, ``factorcl``, see :mod:`jaxmm.models.encoders`); modalities not
        named get ``mlp``.
      layouts: modality -> input layout of a ResNet encoder (default ``auto``:
        inferred from the example shape, see :func:`~jaxmm.models.resnet.visual_layout`).
      encoder_options: modality -> keyword options of its encoder kind (sequence encoders:
        widths, layers, padding rule; see :mod:`jaxmm.models.encoders`).
      projection: width of a per-modality projection (Linear → ReLU → Linear) appended to every
        encoder, BTW's ``ModalProjection``; 0: none.
      encoder_hidden: hidden widths of each ``mlp`` encoder (its output width is the last).
      fusion: ``concat``, ``sum``, ``film``, ``gated`` or ``moe`` (BTW's MoE cross encoder),
        see :mod:`jaxmm.models.fusion`.
        ``sum`` adds one Linear per modality straight to the logits (OGM-GE's
        ``sum``, so ``fusion_hidden`` must be empty); the others feed an MLP head.
      fusion_width: width of the fused vector (``gated`` projections); ``None``: natural width.
      fusion_condition: modality that conditions ``film``/``gated`` (``None``: the first).
      fusion_options: keyword options of the fusion module (e.g. the MoE cross encoder's
        experts and layers, see :mod:`jaxmm.models.fusion`).
      fusion_hidden: hidden widths of the fused head on the fused vector (empty: one Linear).
      unimodal_hidden: hidden widths of each unimodal head (empty: one Linear).
      dropout: dropout rate of the MLP encoders and heads.
      detach_unimodal: unimodal heads read stop-gradient features, so their loss
        does not train the encoders (PID-XOR protocol).
      init: Linear initialisation of MLP encoders and heads: ``torch`` (PyTorch
        ``nn.Linear`` default), ``xavier`` (Xavier-normal, zero bias: the official
        audio-visual ``weight_init``) or ``lecun``.
      dtype: compute dtype of the encoders, ``float32`` or ``bfloat16`` (mixed
        precision: parameters, features, fusion, heads and loss stay float32).
      bn_scale_std: BatchNorm scale init std of ResNet encoders (0: official
        ``weight_init``; 0.02: the MMPareto / D&R backbone init).
    """

    encoders: dict = dataclasses.field(default_factory=dict)
    layouts: dict = dataclasses.field(default_factory=dict)
    encoder_options: dict = dataclasses.field(default_factory=dict)
    projection: int = 0
    encoder_hidden: Sequence[int] = (16,)
    fusion: str = "concat"
    fusion_width: int | None = None
    fusion_condition: str | None = None
    fusion_options: dict = dataclasses.field(default_factory=dict)
    fusion_hidden: Sequence[int] = (32,)
    unimodal_hidden: Sequence[int] = ()
    dropout: float = 0.0
    detach_unimodal: bool = False
    init: str = "torch"
    dtype: str = "float32"
    bn_scale_std: float = 0.0

    def __post_init__(self):
        bad_kinds = {m: k for m, k in self.encoders.items() if k not in ENCODER_KINDS}
        if bad_kinds:
            raise ValueError(f"model.encoders: unknown encoder kind(s) {bad_kinds}; choose from {ENCODER_KINDS}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"model.fusion: unknown fusion {self.fusion!r}; choose one of {sorted(FUSIONS)}")
        if self.fusion == "sum" and self.fusion_hidden:
            raise ValueError("model.fusion='sum' maps each modality straight to the logits (OGM-GE); "
                             "set model.fusion_hidden=() or use fusion 'concat' for a hidden head")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: unknown compute dtype {self.dtype!r}; choose one of {sorted(DTYPES)}")
        if self.init not in INITS:
            raise ValueError(f"model.init: unknown init {self.init!r}; choose one of {INITS}")
        if not isinstance(self.encoder_options, dict) or not all(
                isinstance(m, str) and isinstance(o, dict) for m, o in self.encoder_options.items()):
            raise ValueError("model.encoder_options must map modality names to dicts of encoder options, "
                             f"got {self.encoder_options!r}")
        for modality, options in self.encoder_options.items():
            try:
                check_encoder_options(self.encoders.get(modality, "mlp"), options)
            except ValueError as error:
                raise ValueError(f"model.encoder_options[{modality!r}]: {error}") from None
        if not isinstance(self.projection, int) or isinstance(self.projection, bool) or self.projection < 0:
            raise ValueError(f"model.projection must be an int >= 0 (0: no projection), got {self.projection!r}")
        if not isinstance(self.fusion_options, dict):
            raise ValueError(f"model.fusion_options must be a dict of keyword options, got {self.fusion_options!r}")


MLPModelConfig = ModelConfig
"""Former name of :class:`ModelConfig` (all-MLP defaults), kept for existing experiment configs."""


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """A per-example shape; an int is a vector width."""
    return (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)


class MultimodalClassifier(nnx.Module):
    """Per-modality encoders, a fusion module with a head, and unimodal heads.

    Args:
      input_shapes: modality -> shape of one example (an int is a vector width);
        the order fixes the modality order (concatenation order, first = FiLM/gate condition).
      num_outputs: logits per head (1 for binary tasks trained with sigmoid CE).
      config: see :class:`ModelConfig`.
      unimodal_heads: build a head per modality on its encoder feature.
      fuse: build the fusion module and fused head (unimodal-only models skip them).
      rngs: initialisation and dropout randomness.

    Attributes:
      feature_widths: modality -> its encoder's output width.
      trunk_width: width of the input of the fused head's last Linear (see :meth:`fuse`).
      extras: modules a method adds (``model.extras[name]``; attached by the trainer).

    Raises:
      ValueError: no modality, an unknown encoder kind, fusion or dtype, or an
        input shape the chosen encoder cannot read.
    """

    def __init__(self, input_shapes: Mapping[str, int | Sequence[int]], num_outputs: int, config: ModelConfig,
                 *, unimodal_heads: bool = True, fuse: bool = True, rngs: nnx.Rngs):
        if not input_shapes:
            raise ValueError("a multimodal model needs at least one modality")
        config.__post_init__()  # dict fields may have been edited after construction
        self.modalities = tuple(input_shapes)
        self.detach_unimodal = config.detach_unimodal
        dtype = compute_dtype(config.dtype)
        self.encoders = nnx.Dict({
            m: make_encoder(config.encoders.get(m, "mlp"), _shape(shape), hidden=config.encoder_hidden,
                            dropout=config.dropout, init=config.init, dtype=dtype,
                            bn_scale_std=config.bn_scale_std, layout=config.layouts.get(m, "auto"),
                            options=config.encoder_options.get(m), projection=config.projection, rngs=rngs)
            for m, shape in input_shapes.items()
        })
        widths = {m: self.encoders[m].out_features for m in self.modalities}
        head = dict(dropout=config.dropout, init=config.init, rngs=rngs)
        fusion = fusion_head = None
        trunk_width = sum(widths.values())
        if fuse:
            options = dict(config.fusion_options)
            if config.fusion_condition is not None:
                options["condition"] = config.fusion_condition
            direct = config.fusion == "sum"
            fusion = make_fusion(config.fusion, widths, num_outputs if direct else config.fusion_width,
                                 rngs=rngs, **options)
            if not direct:
                fusion_head = MLP([fusion.out_features, *config.fusion_hidden, num_outputs], **head)
                trunk_width = ([fusion.out_features, *config.fusion_hidden])[-1]
        self.fusion = fusion
        self.fusion_head = fusion_head
        self.unimodal_heads = nnx.Dict({
            m: MLP([widths[m], *config.unimodal_hidden, num_outputs], **head) for m in self.modalities
        }) if unimodal_heads else None
        self.feature_widths = widths
        self.trunk_width = trunk_width
        self.extras = nnx.Dict({})

    def encode_one(self, modality: str, x: jax.Array) -> jax.Array:
        """One modality's encoder feature ``[B, D_m]``, float32 whatever the compute dtype."""
        return self.encoders[modality](x).astype(jnp.float32)

    def encode(self, inputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Encoder features per modality."""
        missing = set(self.modalities) - set(inputs)
        if missing:
            raise ValueError(f"inputs lack modalities {sorted(missing)}; the model expects {self.modalities}")
        return {m: self.encode_one(m, inputs[m]) for m in self.modalities}

    def fuse(self, features: Mapping[str, jax.Array], *, return_trunk: bool = False):
        """Fused logits from the features (and the trunk feature if asked).

        The trunk is the input of the last Linear layer: the fused vector (or the
        head's last hidden layer); for ``sum`` fusion the concatenated features,
        of which the summed per-modality Linear maps are one affine function.
        """
        if self.fusion is None:
            raise ValueError("this model was built without a fusion head (fuse=False)")
        fused = self.fusion({m: features[m] for m in self.modalities})
        if self.fusion_head is not None:
            return self.fusion_head(fused, return_hidden=return_trunk)
        if not return_trunk:
            return fused
        return fused, jnp.concatenate([features[m] for m in self.modalities], axis=-1)

    def unimodal(self, modality: str, feature: jax.Array) -> jax.Array:
        """One modality's head on its (optionally detached) encoder feature."""
        if self.detach_unimodal:
            feature = jax.lax.stop_gradient(feature)
        return self.unimodal_heads[modality](feature)

    def __call__(self, inputs: Mapping[str, jax.Array]) -> ModelOutput:
        features = self.encode(inputs)
        logits = self.fuse(features) if self.fusion is not None else None
        uni = {m: self.unimodal(m, features[m]) for m in self.modalities} if self.unimodal_heads is not None else {}
        return ModelOutput(logits=logits, unimodal_logits=uni, features=features)
