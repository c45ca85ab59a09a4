"""The generic multimodal classifier every method trains: encoders → fusion → heads."""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Sequence

import jax
from flax import nnx

from jaxmm.models.mlp import MLP


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
class MLPModelConfig:
    """Sizes of the MLP multimodal classifier.

    Attributes:
      encoder_hidden: hidden widths of each modality encoder (its output width is the last).
      fusion_hidden: hidden widths of the fused head on the concatenated features.
      unimodal_hidden: hidden widths of each unimodal head (empty: one Linear).
      dropout: dropout rate used everywhere.
      detach_unimodal: unimodal heads read stop-gradient features, so their loss
        does not train the encoders (PID-XOR protocol).
      init: ``torch`` (PyTorch ``nn.Linear`` default, as the official code) or ``lecun``.
    """

    encoder_hidden: Sequence[int] = (16,)
    fusion_hidden: Sequence[int] = (32,)
    unimodal_hidden: Sequence[int] = ()
    dropout: float = 0.0
    detach_unimodal: bool = False
    init: str = "torch"


class MultimodalClassifier(nnx.Module):
    """Per-modality MLP encoders, concatenation fusion with an MLP head, unimodal heads.

    Args:
      input_dims: modality -> flattened input width (order fixes the concatenation order).
      num_outputs: logits per head (1 for binary tasks trained with sigmoid CE).
      config: layer sizes, see :class:`MLPModelConfig`.
      unimodal_heads: build a head per modality on its encoder feature.
      fuse: build the fused head (unimodal-only models skip it).
      extra_modules: ``(trunk_width, num_outputs, rngs) -> {name: module}``, modules
        a method adds (reachable as ``model.extras[name]``); ``trunk_width`` is the
        width of the fused head's last hidden layer.
      rngs: initialisation and dropout randomness.
    """

    def __init__(self, input_dims: Mapping[str, int], num_outputs: int, config: MLPModelConfig,
                 *, unimodal_heads: bool = True, fuse: bool = True, extra_modules=None, rngs: nnx.Rngs):
        if not input_dims:
            raise ValueError("a multimodal model needs at least one modality")
        self.modalities = tuple(input_dims)
        self.detach_unimodal = config.detach_unimodal
        width = list(config.encoder_hidden)
        self.encoders = nnx.Dict({
            m: MLP([d, *width], dropout=config.dropout, activate_output=True,
                init=config.init, rngs=rngs)
            for m, d in input_dims.items()
        })
        feat = width[-1]
        self.fusion_head = (
            MLP([feat * len(input_dims), *config.fusion_hidden, num_outputs], dropout=config.dropout, init=config.init, rngs=rngs)
            if fuse else None
        )
        self.unimodal_heads = nnx.Dict({
            m: MLP([feat, *config.unimodal_hidden, num_outputs], dropout=config.dropout, init=config.init, rngs=rngs)
            for m in input_dims
        }) if unimodal_heads else None
        trunk_width = ([feat * len(input_dims), *config.fusion_hidden])[-1]
        self.extras = nnx.Dict(extra_modules(trunk_width, num_outputs, rngs) if extra_modules else {})

    def encode_one(self, modality: str, x: jax.Array) -> jax.Array:
        """One modality's encoder feature, the input flattened after the batch axis."""
        return self.encoders[modality](x.reshape(x.shape[0], -1))

    def encode(self, inputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """Encoder features per modality."""
        missing = set(self.modalities) - set(inputs)
        if missing:
            raise ValueError(f"inputs lack modalities {sorted(missing)}; the model expects {self.modalities}")
        return {m: self.encode_one(m, inputs[m]) for m in self.modalities}

    def fuse(self, features: Mapping[str, jax.Array], *, return_trunk: bool = False):
        """Fused logits from the concatenated features (and the trunk feature if asked)."""
        if self.fusion_head is None:
            raise ValueError("this model was built without a fusion head (fuse=False)")
        concat = jax.numpy.concatenate([features[m] for m in self.modalities], axis=-1)
        return self.fusion_head(concat, return_hidden=return_trunk)

    def unimodal(self, modality: str, feature: jax.Array) -> jax.Array:
        """One modality's head on its (optionally detached) encoder feature."""
        if self.detach_unimodal:
            feature = jax.lax.stop_gradient(feature)
        return self.unimodal_heads[modality](feature)

    def __call__(self, inputs: Mapping[str, jax.Array]) -> ModelOutput:
        features = self.encode(inputs)
        logits = self.fuse(features) if self.fusion_head is not None else None
        uni = {m: self.unimodal(m, features[m]) for m in self.modalities} if self.unimodal_heads is not None else {}
        return ModelOutput(logits=logits, unimodal_logits=uni, features=features)
