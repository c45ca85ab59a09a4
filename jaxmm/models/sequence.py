"""Sequence encoders: ``[B, T, D]`` feature sequences -> ``[B, out_features]`` vectors.

The model receives only the arrays, so each encoder finds its valid steps itself from a
**padding rule** (:data:`PADDINGS`, see :func:`split_valid`):

* ``left`` (default): valid from the first step with any non-zero feature on (MultiBench's
  start rule for its left zero-padded sequences; later all-zero steps stay valid);
* ``right``: valid up to the last step with any non-zero feature;
* ``mask``: the last feature channel is an explicit 0/1 validity flag (dropped before the
  encoder reads the features);
* ``none``: every step is valid (e.g. image rows, where an all-zero row is real content).

Padded steps never change an output, extra padding on the padded side does not either, and
an all-padding sequence (a modality zeroed by a counterfactual mask) gives a finite output:
the pooled vector or final state is then zero.

Encoders:

* :class:`TransformerEncoder`: input Linear to ``d_model``, positions counted from the
  content start, post-norm layers (PyTorch ``nn.TransformerEncoderLayer``: ReLU
  feed-forward, LayerNorm eps 1e-5) with key-masked self-attention, ``mean`` (masked),
  ``first`` or ``last`` valid-token pooling;
* :class:`LSTMEncoder`, :class:`GRUEncoder`: one recurrent layer (PyTorch gate order and
  parameters: ``w_ih``, ``w_hh``, ``b_ih``, ``b_hh``) scanned with ``lax.scan``; the state
  moves only at valid steps, so the output is the last valid step's hidden state
  (BTW's ``RNNEncoder`` on packed sequences: LSTM hidden 16, dropout, Linear -> 64);
* :func:`factorcl_uni`: SynIB's ``FactorCL_Uni`` encoder (MultiBench ``Transformer``):
  bias-free 1x1 Conv1d (a Linear) to ``hidden_size``, 5 post-norm layers with 5 heads,
  feed-forward 2048, dropout 0.1, no positions, the last step's output.

Text arrives as precomputed per-step features (e.g. the GloVe/BERT features of the
MultiBench pickles): no pretrained language model is downloaded here.

Parameters are float32; ``dtype`` (``None`` or ``jnp.bfloat16``) is the compute dtype.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmm._checks import check_choice
from jaxmm.models.mlp import linear

PADDINGS = ("left", "right", "mask", "none")
POOLINGS = ("mean", "first", "last")
POSITIONS = ("sinusoidal", "learned", "none")


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_rate(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {dropout}")


def split_valid(x: jax.Array, padding: str = "left") -> tuple[jax.Array, jax.Array]:
    """The features and the ``[B, T]`` valid-step mask of a sequence batch under a padding rule.

    Args:
      x: ``[B, T, D]`` sequences (with ``padding="mask"``, the last channel is the 0/1 flag).
      padding: one of :data:`PADDINGS` (see the module docstring).

    Returns:
      ``(features, valid)``: ``[B, T, D]`` features (``[B, T, D - 1]`` for ``mask``: the flag
      channel dropped) and a boolean ``[B, T]`` mask.

    Raises:
      ValueError: for an unknown rule or an input that is not ``[B, T, D]``.
    """
    check_choice("padding", padding, PADDINGS)
    if x.ndim != 3:
        raise ValueError(f"a sequence batch must be [B, T, D], got shape {x.shape}")
    if padding == "mask":
        return x[..., :-1], x[..., -1] > 0.5
    if padding == "none":
        return x, jnp.ones(x.shape[:2], bool)
    nonzero = jnp.any(x != 0, axis=-1).astype(jnp.int32)
    return x, jax.lax.cummax(nonzero, axis=1, reverse=padding == "right") > 0


def sinusoidal(positions: jax.Array, width: int) -> jax.Array:
    """Sine/cosine position codes ``[..., width]`` (``sin`` on even, ``cos`` on odd channels)."""
    rates = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
    angles = positions[..., None].astype(jnp.float32) * rates
    codes = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*positions.shape, -1)
    return codes[..., :width]


def pool(tokens: jax.Array, valid: jax.Array, pooling: str) -> jax.Array:
    """Pools ``[B, T, F]`` tokens to ``[B, F]`` over the valid steps.

    Args:
      tokens: per-step vectors.
      valid: ``[B, T]`` boolean mask.
      pooling: ``mean`` (masked mean), ``first`` or ``last`` valid token (:data:`POOLINGS`).

    Returns:
      The pooled vectors; zero for a sequence without a valid step.
    """
    any_valid = jnp.any(valid, axis=1, keepdims=True)
    if pooling == "mean":
        w = valid.astype(tokens.dtype)[..., None]
        return jnp.sum(tokens * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1)
    index = jnp.argmax(valid, axis=1) if pooling == "first" else valid.shape[1] - 1 - jnp.argmax(valid[:, ::-1], axis=1)
    picked = jnp.take_along_axis(tokens, index[:, None, None], axis=1)[:, 0]
    return jnp.where(any_valid, picked, 0).astype(tokens.dtype)


class SelfAttention(nnx.Module):
    """Multi-head self-attention whose keys are limited to the valid steps.

    Args:
      width: model width (divisible by ``heads``).
      heads: number of heads.
      dropout: dropout rate on the attention weights.
      init: Linear initialisation (see :func:`~jaxmm.models.mlp.linear`).
      dtype: compute dtype (scores and softmax run in float32).
      rngs: initialisation and dropout randomness.
    """

    def __init__(self, width: int, heads: int, *, dropout: float = 0.0, init: str = "torch", dtype=None,
                 rngs: nnx.Rngs):
        if width % heads:
            raise ValueError(f"the width {width} must be divisible by the number of heads {heads}")
        self.query, self.key, self.value, self.out = (linear(width, width, init=init, dtype=dtype, rngs=rngs)
                                                      for _ in range(4))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.heads = heads

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        """``[B, T, width]`` -> ``[B, T, width]``; ``valid`` ``[B, T]`` selects the keys."""
        b, t, width = x.shape
        split = lambda y: y.reshape(b, t, self.heads, width // self.heads)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = jnp.einsum("bqhc,bkhc->bhqk", q, k).astype(jnp.float32) / math.sqrt(width // self.heads)
        scores = jnp.where(valid[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        weights = self.dropout(jax.nn.softmax(scores, axis=-1)).astype(v.dtype)
        return self.out(jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, t, width))


class TransformerLayer(nnx.Module):
    """A post-norm Transformer encoder layer (PyTorch ``nn.TransformerEncoderLayer`` defaults).

    ``x = LN(x + Drop(Attn(x)))``, then ``x = LN(x + Drop(W2 Drop(ReLU(W1 x))))``.

    Args:
      width: model width.
      heads: attention heads.
      ff: feed-forward width.
      dropout: dropout rate (attention weights, both residual branches, feed-forward).
      init: Linear initialisation.
      dtype: compute dtype.
      rngs: initialisation and dropout randomness.
    """

    def __init__(self, width: int, heads: int, ff: int, *, dropout: float = 0.0, init: str = "torch", dtype=None,
                 rngs: nnx.Rngs):
        self.attention = SelfAttention(width, heads, dropout=dropout, init=init, dtype=dtype, rngs=rngs)
        self.norm1 = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.ff1 = linear(width, ff, init=init, dtype=dtype, rngs=rngs)
        self.ff2 = linear(ff, width, init=init, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
        x = self.norm1(x + self.dropout(self.attention(x, valid)))
        return self.norm2(x + self.dropout(self.ff2(self.dropout(jax.nn.relu(self.ff1(x))))))


class TransformerEncoder(nnx.Module):
    """A Transformer over the valid steps of each sequence, pooled to one vector.

    Positions count from the content start (the index among valid steps), so extra left
    padding changes nothing.

    Args:
      in_features: per-step width ``D`` the encoder reads (the flag channel excluded).
      max_len: longest sequence ``T`` (the ``learned`` position table size).
      d_model: model width.
      heads: attention heads (``d_model`` must be divisible by it).
      layers: number of Transformer layers.
      ff: feed-forward width (``None``: ``4 * d_model``).
      dropout: dropout rate inside the layers.
      pooling: ``mean`` (masked mean), ``first`` or ``last`` valid token.
      positions: ``sinusoidal``, ``learned`` or ``none``.
      input_bias: the input Linear has a bias (MultiBench's 1x1 Conv1d has none).
      features: width of an output Linear after pooling (``None``: none, ``out_features = d_model``).
      padding: padding rule, one of :data:`PADDINGS`.
      init: Linear initialisation (see :func:`~jaxmm.models.mlp.linear`).
      dtype: compute dtype (``None`` or ``jnp.bfloat16``); parameters stay float32.
      rngs: initialisation and dropout randomness.

    Raises:
      ValueError: for a non-positive width, an unknown pooling, position kind or padding rule.
    """

    def __init__(self, in_features: int, max_len: int, *, d_model: int = 32, heads: int = 4, layers: int = 2,
                 ff: int | None = None, dropout: float = 0.0, pooling: str = "mean",
                 positions: str = "sinusoidal", input_bias: bool = True, features: int | None = None,
                 padding: str = "left", init: str = "torch", dtype=None, rngs: nnx.Rngs):
        ff = 4 * d_model if ff is None else ff
        _check_positive(in_features=in_features, max_len=max_len, d_model=d_model, heads=heads, layers=layers,
                        ff=ff, **({} if features is None else {"features": features}))
        _check_rate(dropout)
        check_choice("pooling", pooling, POOLINGS)
        check_choice("positions", positions, POSITIONS)
        check_choice("padding", padding, PADDINGS)
        self.embed = linear(in_features, d_model, init=init, dtype=dtype, use_bias=input_bias, rngs=rngs)
        self.position_table = nnx.Embed(max_len, d_model, dtype=dtype, rngs=rngs) if positions == "learned" else None
        self.layers = nnx.List([TransformerLayer(d_model, heads, ff, dropout=dropout, init=init, dtype=dtype,
                                                 rngs=rngs) for _ in range(layers)])
        self.head = None if features is None else linear(d_model, features, init=init, dtype=dtype, rngs=rngs)
        self.positions = positions
        self.pooling = pooling
        self.padding = padding
        self.d_model = d_model
        self.out_features = d_model if features is None else features

    def tokens(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-step outputs ``[B, T, d_model]`` of the last layer and the ``[B, T]`` valid mask."""
        x, valid = split_valid(x, self.padding)
        h = self.embed(x)
        position = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
        if self.positions == "sinusoidal":
            h = h + sinusoidal(position, self.d_model).astype(h.dtype)
        elif self.positions == "learned":
            h = h + self.position_table(position).astype(h.dtype)
        for layer in self.layers:
            h = layer(h, valid)
        return h, valid

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, T, D]`` -> ``[B, out_features]``."""
        pooled = pool(*self.tokens(x), self.pooling)
        return pooled if self.head is None else self.head(pooled)


FACTORCL_UNI = dict(heads=5, layers=5, ff=2048, positions="none", input_bias=False, pooling="last")
"""The fixed part of SynIB's ``FactorCL_Uni`` encoder (MultiBench ``unimodals/common_models.py``
``Transformer``: ``nn.TransformerEncoderLayer(d_model, nhead=5)`` x 5, last step's output)."""


def factorcl_uni(in_features: int, max_len: int, *, hidden_size: int = 40, dropout: float = 0.1,
                 padding: str = "left", dtype=None, rngs: nnx.Rngs) -> TransformerEncoder:
    """SynIB's ``FactorCL_Uni`` encoder: a :class:`TransformerEncoder` with :data:`FACTORCL_UNI`.

    The official MOSI sizes are ``in_features`` 20 (video) / 300 (text), ``hidden_size`` 40;
    its classifier ``pred_fc`` is the model's unimodal head, not part of the encoder. The
    official code attends to padded steps and reads the last step; ``padding="none"``
    reproduces that, the default ``left`` masks MultiBench's left padding instead.

    Args:
      in_features: per-step input width.
      max_len: sequence length ``T``.
      hidden_size: model width (divisible by the 5 heads).
      dropout: dropout rate inside the layers (PyTorch's default 0.1).
      padding: padding rule, one of :data:`PADDINGS`.
      dtype: compute dtype.
      rngs: initialisation and dropout randomness.
    """
    return TransformerEncoder(in_features, max_len, d_model=hidden_size, dropout=dropout, padding=padding,
                              dtype=dtype, rngs=rngs, **FACTORCL_UNI)


def _torch_uniform(bound: float):
    """PyTorch's RNN initialisation: ``U(-bound, bound)``."""
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def lstm_cell(state: tuple, xw: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> tuple:
    """One LSTM step (PyTorch gate order i, f, g, o): ``(h, c)`` -> ``(h', c')``."""
    h, c = state
    i, f, g, o = jnp.split(xw + h @ w_hh + b_hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def gru_cell(state: tuple, xw: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> tuple:
    """One GRU step (PyTorch gate order r, z, n): ``(h,)`` -> ``(h',)``."""
    (h,) = state
    x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ w_hh + b_hh, 3, axis=-1)
    r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
    return ((1 - z) * jnp.tanh(x_n + r * h_n) + z * h,)


class _Recurrent(nnx.Module):
    """One recurrent layer over the valid steps, read at the last valid step (see subclasses).

    A subclass sets ``gates`` (gate blocks in the weights), ``carries`` (state arrays, the
    hidden state first) and ``cell``, ``(state, xw, w_hh, b_hh) -> next state`` from the input
    projection ``xw = x @ w_ih + b_ih`` of one step (:func:`lstm_cell`, :func:`gru_cell`).
    """

    gates: int
    carries: int
    cell: Callable

    def __init__(self, in_features: int, *, hidden: int = 16, features: int | None = None, dropout: float = 0.0,
                 padding: str = "left", init: str = "torch", dtype=None, rngs: nnx.Rngs):
        _check_positive(in_features=in_features, hidden=hidden, **({} if features is None else {"features": features}))
        _check_rate(dropout)
        check_choice("padding", padding, PADDINGS)
        draw = _torch_uniform(hidden ** -0.5)
        width = self.gates * hidden
        self.w_ih = nnx.Param(draw(rngs.params(), (in_features, width)))
        self.w_hh = nnx.Param(draw(rngs.params(), (hidden, width)))
        self.b_ih = nnx.Param(draw(rngs.params(), (width,)))
        self.b_hh = nnx.Param(draw(rngs.params(), (width,)))
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.head = None if features is None else linear(hidden, features, init=init, dtype=dtype, rngs=rngs)
        self.hidden = hidden
        self.padding = padding
        self.dtype = dtype
        self.out_features = hidden if features is None else features

    def state(self, x: jax.Array) -> jax.Array:
        """The hidden state ``[B, hidden]`` after the last valid step (zeros if none)."""
        x, valid = split_valid(x, self.padding)
        dtype = self.dtype or jnp.float32
        w_ih, w_hh, b_ih, b_hh = (p[...].astype(dtype) for p in (self.w_ih, self.w_hh, self.b_ih, self.b_hh))
        xw = jnp.einsum("btd,dg->tbg", x.astype(dtype), w_ih) + b_ih
        zeros = jnp.zeros((x.shape[0], self.hidden), dtype)

        def step(state, inputs):
            xw_t, valid_t = inputs
            new = self.cell(state, xw_t, w_hh, b_hh)
            return jax.tree.map(lambda n, s: jnp.where(valid_t[:, None], n, s), new, state), None

        state, _ = jax.lax.scan(step, (zeros,) * self.carries, (xw, valid.T))
        return state[0]

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, T, D]`` -> ``[B, out_features]``: the last valid hidden state, dropout, output Linear."""
        h = self.dropout(self.state(x))
        return h if self.head is None else self.head(h)


class LSTMEncoder(_Recurrent):
    """A one-layer LSTM (PyTorch ``nn.LSTM`` gates i, f, g, o); output: the last valid hidden state.

    With ``hidden=16, features=64`` it is BTW's audio/video ``RNNEncoder`` (packed sequences,
    ``h_n``, dropout, ``Linear(16, 64)``; the official dropout is 0 for one layer).

    Args:
      in_features: per-step width ``D`` the encoder reads (the flag channel excluded).
      hidden: hidden-state width.
      features: width of an output Linear (``None``: none, ``out_features = hidden``).
      dropout: dropout rate on the final hidden state.
      padding: padding rule, one of :data:`PADDINGS`.
      init: initialisation of the output Linear (the LSTM itself draws PyTorch's
        ``U(-1/sqrt(hidden), 1/sqrt(hidden))``).
      dtype: compute dtype; parameters stay float32.
      rngs: initialisation and dropout randomness.
    """

    gates, carries = 4, 2
    cell = staticmethod(lstm_cell)


class GRUEncoder(_Recurrent):
    """A one-layer GRU (PyTorch ``nn.GRU`` gates r, z, n); output: the last valid hidden state.

    ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h' = (1 - z) * n + z * h``.
    Arguments as :class:`LSTMEncoder`.
    """

    gates, carries = 3, 1
    cell = staticmethod(gru_cell)
