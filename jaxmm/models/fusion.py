"""Fusion modules: per-modality feature vectors -> one fused vector.

Every fusion module shares one constructor and one call signature::

    fusion = SomeFusion(in_features, out_features, rngs=rngs, **options)
    fused = fusion(features)          # features: {modality: [B, in_features[modality]]}
    fused.shape == (B, fusion.out_features)

* ``in_features`` maps each modality name to its feature width. Its order is the
  modality order of the module (concatenation order, which modality conditions
  the other); the call-time dict must have exactly these keys, in any order
  (``jax`` pytree flattening sorts dict keys, so call-time order is not relied on).
* ``out_features`` is the width of the fused vector, or ``None`` for the module's
  natural width (documented per class).
* ``rngs`` initialises the parameters (``params`` stream).

Each module keeps ``in_features`` as ``(name, width)`` pairs (:data:`Widths`; a
hashable static attribute, as ``nnx.split`` graph definitions require) and
``out_features`` as an int, enough to build the layer that follows.

The modules reproduce OGM-GE's fusion heads without their final classifier: a
head ``Linear(fusion.out_features, num_classes)`` on top of :class:`ConcatFusion`,
:class:`FiLMFusion` or :class:`GatedFusion` gives OGM-GE's ``concat``, ``film`` and
``gated``; :class:`SumFusion` with ``out_features=num_classes`` is OGM-GE's ``sum``.
Linear layers use the official ``weight_init``: Xavier-normal weights, zero bias.
:class:`MoEFusion` is BTW's mixture-of-experts cross encoder (:mod:`jaxmm.models.moe`).
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm.models.mlp import linear
from jaxmm.models.moe import LAYER_NORM_EPS, CrossEncoderLayer

Widths = tuple[tuple[str, int], ...]
"""``(modality name, feature width)`` pairs in modality order: each module's ``in_features``."""


def _linear(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    """A Linear layer with Xavier-normal weights and zero bias."""
    return linear(in_features, out_features, init="xavier", rngs=rngs)


def _check_in_features(in_features: Mapping[str, int], fusion: str) -> Widths:
    """Validates ``in_features`` and returns its ``(name, width)`` pairs in order.

    Raises:
      ValueError: if it is empty or a width is not a positive int.
    """
    if not in_features:
        raise ValueError(f"{fusion}: in_features is empty; pass {{modality: feature width}}.")
    for name, width in in_features.items():
        if not isinstance(width, int) or width <= 0:
            raise ValueError(f"{fusion}: feature width of {name!r} must be a positive int, got {width!r}.")
    return tuple(in_features.items())


def _common_width(in_features: Widths, out_features: int | None, fusion: str) -> int:
    """``out_features``, or the width all modalities share when it is ``None``.

    Raises:
      ValueError: if ``out_features`` is not a positive int, or is ``None`` and the input widths differ.
    """
    if out_features is not None:
        if not isinstance(out_features, int) or out_features <= 0:
            raise ValueError(f"{fusion}: out_features must be a positive int or None, got {out_features!r}.")
        return out_features
    widths = {width for _, width in in_features}
    if len(widths) != 1:
        raise ValueError(
            f"{fusion}: input widths differ ({dict(in_features)}); pass out_features explicitly."
        )
    return widths.pop()


def _split_condition(
    in_features: Widths, condition: str | None, fusion: str
) -> tuple[str, str]:
    """Returns ``(conditioning modality, conditioned modality)`` for a two-modality fusion.

    Raises:
      ValueError: unless there are exactly two modalities and ``condition`` is ``None`` or one of them.
    """
    names = [name for name, _ in in_features]
    if len(names) != 2:
        raise ValueError(f"{fusion} fuses exactly two modalities, got {names}.")
    if condition is None:
        condition = names[0]
    if condition not in names:
        raise ValueError(f"{fusion}: condition {condition!r} is not one of the modalities {names}.")
    other = names[1] if condition == names[0] else names[0]
    return condition, other


def _check_features(
    features: Mapping[str, jax.Array], in_features: Widths, fusion: str
) -> list[jax.Array]:
    """Checks the call-time features and returns them in the module's modality order.

    Raises:
      ValueError: if the modality names differ from ``in_features`` or an array is not ``[B, width]``.
    """
    names = [name for name, _ in in_features]
    if set(features) != set(names):
        raise ValueError(f"{fusion} expects features for modalities {sorted(names)}, got {sorted(features)}.")
    ordered = []
    for name, width in in_features:
        x = features[name]
        if x.ndim != 2 or x.shape[-1] != width:
            raise ValueError(f"{fusion}: features[{name!r}] must have shape [B, {width}], got {x.shape}.")
        ordered.append(x)
    return ordered


class ConcatFusion(nnx.Module):
    """Concatenation of the feature vectors, in the order of ``in_features``; no parameters.

    Args:
      in_features: modality name -> feature width.
      out_features: ``None`` or the sum of the input widths (the only possible width).
      rngs: unused; accepted so that all fusion modules share one constructor.

    Raises:
      ValueError: for bad ``in_features`` or an ``out_features`` other than the sum of widths.
    """

    def __init__(
        self, in_features: Mapping[str, int], out_features: int | None = None, *, rngs: nnx.Rngs | None = None
    ):
        self.in_features = _check_in_features(in_features, "ConcatFusion")
        total = sum(width for _, width in self.in_features)
        if out_features not in (None, total):
            raise ValueError(
                f"ConcatFusion: out_features must be None or {total} (the sum of widths), got {out_features}."
            )
        self.out_features = total

    def __call__(self, features: Mapping[str, jax.Array]) -> jax.Array:
        """Returns ``[B, sum of widths]``."""
        return jnp.concatenate(_check_features(features, self.in_features, "ConcatFusion"), axis=-1)


class SumFusion(nnx.Module):
    """One Linear per modality to a common width, summed: ``sum_m (W_m x_m + b_m)``.

    Args:
      in_features: modality name -> feature width.
      out_features: common output width; ``None`` when all input widths are equal
        uses that width. For OGM-GE's ``sum`` fusion pass the number of classes.
      rngs: random streams for initialisation.

    Attributes:
      projections: modality name -> Linear.
    """

    def __init__(self, in_features: Mapping[str, int], out_features: int | None = None, *, rngs: nnx.Rngs):
        self.in_features = _check_in_features(in_features, "SumFusion")
        self.out_features = _common_width(self.in_features, out_features, "SumFusion")
        self.projections = nnx.Dict(
            {name: _linear(width, self.out_features, rngs) for name, width in self.in_features}
        )

    def __call__(self, features: Mapping[str, jax.Array]) -> jax.Array:
        """Returns ``[B, out_features]``."""
        inputs = _check_features(features, self.in_features, "SumFusion")
        return sum(self.projections[name](x) for (name, _), x in zip(self.in_features, inputs))


class FiLMFusion(nnx.Module):
    """FiLM over two modalities: one modality's features scale and shift the other's.

    ``[gamma; beta] = W c + b`` from the conditioning features ``c``, then
    ``out = gamma * x + beta`` for the conditioned features ``x`` (OGM-GE ``film``
    with ``x_film=True`` when audio is the conditioning modality).

    Args:
      in_features: two modalities, name -> feature width.
      out_features: ``None`` or the conditioned modality's width (the only possible width).
      rngs: random streams for initialisation.
      condition: name of the conditioning modality; ``None`` picks the first key of ``in_features``.

    Attributes:
      film: Linear from the conditioning width to twice the conditioned width.

    Raises:
      ValueError: for other than two modalities, an unknown ``condition`` or a bad ``out_features``.
    """

    def __init__(
        self,
        in_features: Mapping[str, int],
        out_features: int | None = None,
        *,
        rngs: nnx.Rngs,
        condition: str | None = None,
    ):
        self.in_features = _check_in_features(in_features, "FiLMFusion")
        self.condition, self.conditioned = _split_condition(self.in_features, condition, "FiLMFusion")
        widths = dict(self.in_features)
        width = widths[self.conditioned]
        if out_features not in (None, width):
            raise ValueError(
                f"FiLMFusion: out_features must be None or {width} (the width of {self.conditioned!r}), "
                f"got {out_features}."
            )
        self.out_features = width
        self.film = _linear(widths[self.condition], 2 * width, rngs)

    def __call__(self, features: Mapping[str, jax.Array]) -> jax.Array:
        """Returns ``gamma * x + beta``, ``[B, out_features]``."""
        _check_features(features, self.in_features, "FiLMFusion")
        gamma, beta = jnp.split(self.film(features[self.condition]), 2, axis=-1)
        return gamma * features[self.conditioned] + beta


class GatedFusion(nnx.Module):
    """Gated fusion over two modalities (Kiela et al., 2018, as in OGM-GE ``gated``).

    Both modalities are projected to ``out_features``; the sigmoid of the
    conditioning modality's projection gates the other's:
    ``out = sigmoid(W_c c + b_c) * (W_x x + b_x)``.

    Args:
      in_features: two modalities, name -> feature width.
      out_features: width of the projections; ``None`` when both input widths are equal uses that width.
      rngs: random streams for initialisation.
      condition: name of the gating modality; ``None`` picks the first key of ``in_features``.

    Attributes:
      projections: modality name -> Linear to ``out_features``.

    Raises:
      ValueError: for other than two modalities, an unknown ``condition`` or unequal widths without ``out_features``.
    """

    def __init__(
        self,
        in_features: Mapping[str, int],
        out_features: int | None = None,
        *,
        rngs: nnx.Rngs,
        condition: str | None = None,
    ):
        self.in_features = _check_in_features(in_features, "GatedFusion")
        self.condition, self.conditioned = _split_condition(self.in_features, condition, "GatedFusion")
        self.out_features = _common_width(self.in_features, out_features, "GatedFusion")
        self.projections = nnx.Dict(
            {name: _linear(width, self.out_features, rngs) for name, width in self.in_features}
        )

    def __call__(self, features: Mapping[str, jax.Array]) -> jax.Array:
        """Returns the gated projection, ``[B, out_features]``."""
        _check_features(features, self.in_features, "GatedFusion")
        gate = nnx.sigmoid(self.projections[self.condition](features[self.condition]))
        return gate * self.projections[self.conditioned](features[self.conditioned])


class MoEFusion(nnx.Module):
    """BTW's cross encoder: ``√d`` scale, sparse-MoE cross-encoder layers, per-modality LayerNorm, concat.

    The official ``TransformerCrossEncoder`` (``JuneHou/Multimodal-Infomax-moe``): every modality's
    ``d``-wide embedding is multiplied by ``√d``, passes ``num_layers``
    :class:`~jaxmm.models.moe.CrossEncoderLayer` (depthwise-separable Conv1d block, sparse MoE with a
    Laplace router per modality, feed-forward; see :mod:`jaxmm.models.moe`) and a final LayerNorm per
    modality; the results are concatenated in the order of ``in_features``. BTW's SubNet (hidden 128)
    is the classifier's fusion head on top. Works for any number of modalities.

    Args:
      in_features: modality name -> feature width; all widths must be equal (BTW projects every
        modality to 128 first: ``ModelConfig.projection``).
      out_features: ``None`` or ``M · d`` (the only possible width).
      rngs: initialisation, and the ``dropout`` stream (routing noise and expert dropout in training).
      num_layers: cross-encoder layers (BTW 2).
      num_experts: experts of each layer's MoE (BTW 16).
      top_k: experts per token (BTW 2).
      expert_hidden: hidden width of every expert (BTW 768).
      noisy_gating: learned Gaussian noise on the routing logits in training (code: on).
      expert_dropout: dropout inside the experts in training (code 0.1).

    Raises:
      ValueError: for unequal widths, a bad ``out_features`` or bad MoE sizes.
    """

    def __init__(self, in_features: Mapping[str, int], out_features: int | None = None, *, rngs: nnx.Rngs,
                 num_layers: int = 2, num_experts: int = 16, top_k: int = 2, expert_hidden: int = 768,
                 noisy_gating: bool = True, expert_dropout: float = 0.1):
        self.in_features = _check_in_features(in_features, "MoEFusion")
        widths = {width for _, width in self.in_features}
        if len(widths) != 1:
            raise ValueError(f"MoEFusion: input widths differ ({dict(self.in_features)}); project every modality "
                             "to one width first (ModelConfig.projection).")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"MoEFusion: num_layers must be a positive int, got {num_layers!r}.")
        self.width = widths.pop()
        m = len(self.in_features)
        if out_features not in (None, m * self.width):
            raise ValueError(f"MoEFusion: out_features must be None or {m * self.width} "
                             f"(modalities × width), got {out_features}.")
        self.out_features = m * self.width
        self.layers = nnx.List([
            CrossEncoderLayer(m, self.width, num_experts=num_experts, top_k=top_k, hidden=expert_hidden,
                              noisy_gating=noisy_gating, dropout=expert_dropout, rngs=rngs)
            for _ in range(num_layers)])
        self.norms = nnx.List([nnx.LayerNorm(self.width, epsilon=LAYER_NORM_EPS, rngs=rngs) for _ in range(m)])

    def __call__(self, features: Mapping[str, jax.Array]) -> jax.Array:
        """Returns ``[B, M · d]``."""
        x = jnp.stack(_check_features(features, self.in_features, "MoEFusion")) * self.width ** 0.5
        for layer in self.layers:
            x = layer(x)
        return jnp.concatenate([norm(t) for norm, t in zip(self.norms, x)], axis=-1)


FUSIONS = {"concat": ConcatFusion, "sum": SumFusion, "film": FiLMFusion, "gated": GatedFusion, "moe": MoEFusion}
"""Fusion name -> module class, the names :func:`make_fusion` accepts."""


def make_fusion(
    name: str,
    in_features: Mapping[str, int],
    out_features: int | None = None,
    rngs: nnx.Rngs | None = None,
    **options,
) -> nnx.Module:
    """Builds a fusion module by name.

    Args:
      name: one of ``"concat"``, ``"sum"``, ``"film"``, ``"gated"``, ``"moe"``.
      in_features: modality name -> feature width.
      out_features: fused width, or ``None`` for the module's natural width.
      rngs: random streams for initialisation (required except for ``"concat"``).
      **options: module-specific keywords, e.g. ``condition`` for ``"film"`` / ``"gated"``, the
        MoE sizes for ``"moe"`` (:class:`MoEFusion`).

    Returns:
      The fusion module; its ``out_features`` attribute is the fused width.

    Raises:
      ValueError: for an unknown ``name`` (the message lists the valid names), or
        when ``rngs`` is missing for a module with parameters.
    """
    if name not in FUSIONS:
        raise ValueError(f"Unknown fusion {name!r}; valid names are {sorted(FUSIONS)}.")
    if rngs is None and name != "concat":
        raise ValueError(f"Fusion {name!r} has parameters; pass rngs=nnx.Rngs(seed).")
    return FUSIONS[name](in_features, out_features, rngs=rngs, **options)
