"""Sparse mixture of experts with per-modality Laplace routers, and BTW's MoE cross-encoder layer.

Read from BTW's official code (``JuneHou/Multimodal-Infomax-moe``: ``modules/sparse_moe.py``,
``modules/module.py``, ``modules/config.py``; the MoE is FuseMoE's):

* **Tokens.** Every modality contributes one token per example, its ``[d]`` embedding
  (no time axis: the encoders have already pooled the sequences).
* **Routing** (``router_type="permod"``): modality ``m`` has its own router; all modalities share
  the ``E`` experts. Laplace gating: ``logit_e = −‖x − c_e‖₂`` with one centre ``c_e`` per expert
  (:func:`laplace_logits`; the centres start at 0 as in the code). In training the logits get
  Gaussian noise of standard deviation ``softplus(x W_noise) + 0.01`` (noisy top-k gating,
  ``W_noise`` starts at 0), the top-``k`` logits are kept and their softmax is the gate
  (:func:`top_k_gates`). The code adds the noise at evaluation too (its ``train`` flag is never
  set to False); here evaluation routes on the clean logits, so predictions are deterministic.
* **No capacity.** Every token reaches all of its ``k`` experts, however many tokens an expert
  gets; nothing is dropped. Dispatch is real: the token-expert assignments are sorted by expert
  and each expert's two Linear layers run only on its own tokens, as a tiled grouped matmul of
  static shape (:func:`grouped_expert_outputs`). (``jax.lax.ragged_dot`` would be the natural
  primitive, but XLA:CPU lowers it to a masked dense product over all experts, as slow as the
  dense mixture; the tiled form made a training step of BTW's cross encoder about 2× faster on CPU.)
* **Experts**: ``Linear(d, hidden) → GELU → Dropout(0.1) → Linear(hidden, out)``.
* **Combine in log space** (the Shazeer et al. dispatcher the code keeps): a token's output is
  ``log Σ_k g_k exp(y_k)``, computed stably as ``logsumexp(y_k + log g_k)`` (:func:`log_space_combine`;
  equal to the code wherever its ``exp`` neither overflows nor underflows). With ``permod``
  routing the outputs of the modalities' tokens are summed into one ``[out]`` vector per example.
* **Load balancing.** The code computes FuseMoE's ``1e-2 · Σ_m (cv²(importance) + cv²(load))`` but
  its cross-encoder layer drops it: it never reaches the training loss, so there is none here.

:class:`CrossEncoderLayer` is one layer of the code's ``TransformerCrossEncoder`` for ``M``
modalities of width ``d`` (its attention modules are built but never called there, so they are
absent here)::

    c_m = ReLU(p_m · DepthConv3_m(x_m) + q_m)        # depthwise-separable Conv1d over the d features
    u_m = LayerNorm_m(x_m + c_m)
    x_m ← x_m + MoE(u_1 … u_M)[m-th slice of width d]  # the MoE's output has width M·d
    x_m ← x_m + W2_m ReLU(W1_m LayerNorm_m(x_m))      # feed-forward, hidden 4d

The Conv1d runs over the ``d`` features of one token with one channel (kernel 3, zero padding 1,
then a 1×1 convolution: a scale and a shift), and the code's ``AdaptiveAvgPool1d(128)`` that follows
is the identity at ``d = 128`` (we keep width ``d`` for any ``d``). The MoE's residual adds to the
layer input ``x_m``, not to ``x_m + c_m``: the convolution only shapes what the router and the
experts see. Dropouts other than the experts' are 0 in the code (BTW builds the encoder with its
defaults) and are left out. Every parameter is initialised like its PyTorch counterpart.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NOISE_EPSILON = 1e-2
"""Floor of the routing noise's standard deviation (FuseMoE's ``noise_epsilon``)."""
LAYER_NORM_EPS = 1e-5
"""PyTorch's ``nn.LayerNorm`` epsilon."""


def laplace_logits(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Laplace gating logits ``−‖x_n − c_e‖₂`` (FuseMoE; ``-torch.cdist(x, w_gate.T)``).

    Args:
      x: ``[N, d]`` tokens.
      centers: ``[E, d]`` one centre per expert.

    Returns:
      ``[N, E]`` logits. At zero distance the gradient is 0 (as ``torch.cdist``), not NaN.
    """
    sq = jnp.sum(jnp.square(x[:, None, :] - centers[None, :, :]), axis=-1)
    positive = sq > 0
    return -jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def top_k_gates(logits: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The ``k`` largest logits of each token and their softmax.

    Args:
      logits: ``[N, E]`` routing logits.
      k: experts per token.

    Returns:
      ``(gates [N, k], experts [N, k])``: the gates sum to 1 over each token's ``k`` experts,
      ordered by decreasing logit (ties: the lower expert index first).
    """
    top, experts = jax.lax.top_k(logits, k)
    return jax.nn.softmax(top, axis=-1), experts


def gelu(x: jax.Array) -> jax.Array:
    """The exact (erf) GELU, PyTorch's ``nn.GELU()`` and the code's ``hidden_act="gelu"``."""
    return jax.nn.gelu(x, approximate=False)


def tile_size(rows: int, num_experts: int) -> int:
    """Rows per tile of the grouped matmul: the mean group size rounded up to a power of two, in [8, 128]."""
    mean = -(-rows // num_experts)
    return min(128, max(8, 1 << max(mean - 1, 0).bit_length()))


def grouped_expert_outputs(x: jax.Array, experts: jax.Array, w1: jax.Array, b1: jax.Array,
                           w2: jax.Array, b2: jax.Array, hidden_fn=gelu, tile: int | None = None) -> jax.Array:
    """Each token's output from each of its experts, computed only for the assigned pairs.

    A grouped matmul of static shape: the ``N·k`` token-expert assignments are sorted by expert
    and laid out in tiles of ``tile`` rows, each expert's group padded to whole tiles (at most
    ``(N·k + E·(tile − 1)) / tile`` tiles); every tile is multiplied by its own expert's weights
    (one batched matmul per layer). Each expert thus runs on its own tokens and on zero padding
    only, never on the other tokens.

    Args:
      x: ``[N, d]`` tokens.
      experts: ``[N, k]`` int expert indices of each token.
      w1, b1: ``[E, d, H]`` and ``[E, H]``, the experts' first layers.
      w2, b2: ``[E, H, O]`` and ``[E, O]``, the experts' second layers.
      hidden_fn: applied to the hidden activations (default: exact GELU).
      tile: rows per tile (``None``: :func:`tile_size`).

    Returns:
      ``[N, k, O]``: ``out[n, j] = expert_{experts[n, j]}(x[n])``.
    """
    n, k = experts.shape
    num_experts, rows = w1.shape[0], n * k
    tile = tile or tile_size(rows, num_experts)
    num_tiles = (rows + num_experts * (tile - 1)) // tile
    flat = experts.reshape(-1)
    rank = jnp.zeros(rows, jnp.int32).at[jnp.argsort(flat, stable=True)].set(jnp.arange(rows, dtype=jnp.int32))
    sizes = jnp.bincount(flat, length=num_experts)
    padded = -(-sizes // tile) * tile
    padded_end = jnp.cumsum(padded)
    slot = (padded_end - padded)[flat] + rank - (jnp.cumsum(sizes) - sizes)[flat]   # row in the tiled buffer
    tile_expert = jnp.minimum(jnp.searchsorted(padded_end, jnp.arange(num_tiles) * tile, side="right"),
                              num_experts - 1)  # unused tiles (all padding) borrow the last expert
    tiles = jnp.zeros((num_tiles * tile, x.shape[1]), x.dtype).at[slot].set(jnp.repeat(x, k, axis=0))
    tiles = tiles.reshape(num_tiles, tile, -1)
    h = hidden_fn(jnp.einsum("tnd,tdh->tnh", tiles, w1[tile_expert]) + b1[tile_expert][:, None])
    y = jnp.einsum("tnh,tho->tno", h, w2[tile_expert]) + b2[tile_expert][:, None]
    return y.reshape(num_tiles * tile, -1)[slot].reshape(n, k, -1)


def log_space_combine(outputs: jax.Array, gates: jax.Array) -> jax.Array:
    """``log Σ_j g_j exp(y_j)`` over each token's experts (the code's log-space dispatcher).

    Args:
      outputs: ``[N, k, O]`` expert outputs.
      gates: ``[N, k]`` positive gates.

    Returns:
      ``[N, O]``.
    """
    return jax.nn.logsumexp(outputs + jnp.log(gates)[..., None], axis=1)


def _uniform(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int) -> nnx.Param:
    """PyTorch's default Linear/Conv initialisation ``U(−1/√fan_in, 1/√fan_in)``."""
    bound = fan_in ** -0.5
    return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis of ``[M, N, d]`` with per-modality ``[M, d]`` scale and bias."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS) * scale[:, None] + bias[:, None]


class SparseMoE(nnx.Module):
    """Sparse top-k mixture of shared experts with one Laplace router per modality ("permod").

    Args:
      num_modalities: routers (one per modality).
      in_features: token width ``d``.
      out_features: expert output width.
      num_experts: experts ``E`` (BTW 16).
      top_k: experts per token (BTW 2).
      hidden: expert hidden width (BTW 768).
      noisy_gating: add FuseMoE's learned routing noise in training (code: on).
      dropout: dropout between the experts' layers in training (code 0.1).
      rngs: initialisation, and the ``dropout`` stream for the routing noise and dropout.

    Call with ``[M, N, d]`` tokens (modality-major); returns ``[N, out_features]``, the sum over
    modalities of each token's log-space combination of its ``top_k`` experts' outputs.
    ``model.eval()`` turns noise and dropout off (``deterministic``).

    Raises:
      ValueError: for non-positive sizes, ``top_k > num_experts`` or a dropout outside ``[0, 1)``.
    """

    def __init__(self, num_modalities: int, in_features: int, out_features: int, *, num_experts: int = 16,
                 top_k: int = 2, hidden: int = 768, noisy_gating: bool = True, dropout: float = 0.1,
                 rngs: nnx.Rngs):
        sizes = dict(num_modalities=num_modalities, in_features=in_features, out_features=out_features,
                     num_experts=num_experts, top_k=top_k, hidden=hidden)
        bad = {name: v for name, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"SparseMoE: sizes must be positive ints, got {bad}.")
        if top_k > num_experts:
            raise ValueError(f"SparseMoE: top_k={top_k} exceeds num_experts={num_experts}; lower top_k.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SparseMoE: dropout must be in [0, 1), got {dropout}.")
        self.top_k = top_k
        self.noisy_gating = noisy_gating
        self.deterministic = False
        zeros = lambda *shape: nnx.Param(jnp.zeros(shape, jnp.float32))  # the code's w_gate / w_noise
        self.centers = zeros(num_modalities, num_experts, in_features)
        self.noise_weights = zeros(num_modalities, in_features, num_experts) if noisy_gating else None
        self.noise_rngs = rngs["dropout"].fork() if noisy_gating else None
        self.w1 = _uniform(rngs, (num_experts, in_features, hidden), in_features)
        self.b1 = _uniform(rngs, (num_experts, hidden), in_features)
        self.w2 = _uniform(rngs, (num_experts, hidden, out_features), hidden)
        self.b2 = _uniform(rngs, (num_experts, out_features), hidden)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def logits(self, x: jax.Array) -> jax.Array:
        """Routing logits ``[M, N, E]`` of ``[M, N, d]`` tokens: Laplace, plus the noise in training."""
        clean = jax.vmap(laplace_logits)(x, self.centers[...])
        if not self.noisy_gating or self.deterministic:
            return clean
        std = jax.nn.softplus(jnp.einsum("mnd,mde->mne", x, self.noise_weights[...])) + NOISE_EPSILON
        return clean + jax.random.normal(self.noise_rngs(), clean.shape) * std

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[M, N, d]`` tokens -> ``[N, out_features]``."""
        m, n, d = x.shape
        gates, experts = top_k_gates(self.logits(x).reshape(m * n, -1), self.top_k)
        outputs = grouped_expert_outputs(x.reshape(m * n, d), experts, self.w1[...], self.b1[...],
                                         self.w2[...], self.b2[...],
                                         hidden_fn=lambda h: self.dropout(gelu(h)))
        return log_space_combine(outputs, gates).reshape(m, n, -1).sum(axis=0)


class CrossEncoderLayer(nnx.Module):
    """One layer of BTW's MoE cross encoder over ``M`` modality tokens of width ``d`` (module docstring).

    Args:
      num_modalities: ``M``.
      width: ``d``, every modality's token width.
      rngs: initialisation and the MoE's random streams.
      **moe: :class:`SparseMoE` keywords (``num_experts``, ``top_k``, ``hidden``, ``noisy_gating``,
        ``dropout``).

    Call with ``[M, B, d]``; returns ``[M, B, d]``.
    """

    def __init__(self, num_modalities: int, width: int, *, rngs: nnx.Rngs, **moe):
        m, d = num_modalities, width
        self.depth_w = _uniform(rngs, (m, 3), 3)     # Conv1d(1, 1, kernel 3, padding 1)
        self.depth_b = _uniform(rngs, (m,), 3)
        self.point_w = _uniform(rngs, (m,), 1)       # Conv1d(1, 1, kernel 1)
        self.point_b = _uniform(rngs, (m,), 1)
        self.norm_scale = nnx.Param(jnp.ones((2, m, d), jnp.float32))   # before the MoE, before the FFN
        self.norm_bias = nnx.Param(jnp.zeros((2, m, d), jnp.float32))
        self.moe = SparseMoE(m, d, m * d, rngs=rngs, **moe)
        self.fc1_w = _uniform(rngs, (m, d, 4 * d), d)
        self.fc1_b = _uniform(rngs, (m, 4 * d), d)
        self.fc2_w = _uniform(rngs, (m, 4 * d, d), 4 * d)
        self.fc2_b = _uniform(rngs, (m, d), 4 * d)

    def conv(self, x: jax.Array) -> jax.Array:
        """The per-modality depthwise-separable Conv1d block over the features: ``[M, B, d]``."""
        padded = jnp.pad(x, ((0, 0), (0, 0), (1, 1)))
        w = self.depth_w[...][:, None, None, :]
        depth = (w[..., 0] * padded[..., :-2] + w[..., 1] * padded[..., 1:-1] + w[..., 2] * padded[..., 2:]
                 + self.depth_b[...][:, None, None])
        return jax.nn.relu(self.point_w[...][:, None, None] * depth + self.point_b[...][:, None, None])

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[M, B, d]`` -> ``[M, B, d]``."""
        m, b, d = x.shape
        scale, bias = self.norm_scale[...], self.norm_bias[...]
        mixed = self.moe(_layer_norm(x + self.conv(x), scale[0], bias[0]))        # [B, M·d]
        x = x + jnp.moveaxis(mixed.reshape(b, m, d), 1, 0)
        h = jax.nn.relu(jnp.einsum("mbd,mdh->mbh", _layer_norm(x, scale[1], bias[1]), self.fc1_w[...])
                        + self.fc1_b[...][:, None])
        return x + jnp.einsum("mbh,mhd->mbd", h, self.fc2_w[...]) + self.fc2_b[...][:, None]
