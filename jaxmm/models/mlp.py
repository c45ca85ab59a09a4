"""Multi-layer perceptrons: the encoders and heads of the small-model experiments."""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

INITS = ("torch", "lecun", "xavier")

# Xavier (Glorot) normal as torch.nn.init.xavier_normal_: untruncated, std = sqrt(2 / (fan_in + fan_out)).
xavier_normal = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")


def linear(in_features: int, out_features: int, *, init: str = "torch", dtype=None, use_bias: bool = True,
           rngs: nnx.Rngs) -> nnx.Linear:
    """A Linear layer initialised like PyTorch's ``nn.Linear``, the GeWu-Lab ``weight_init`` or Flax.

    ``init="torch"``: PyTorch draws weights and biases from ``U(−1/√fan_in, 1/√fan_in)``;
    the official code of most methods uses it, and the small synthetic protocols
    train noticeably faster from it than from LeCun-normal weights with zero biases.
    ``init="xavier"``: Xavier-normal weights and zero biases, the official
    ``weight_init`` of the audio-visual protocol. ``init="lecun"``: Flax's default.
    ``dtype`` is the computation dtype (parameters stay float32); ``use_bias=False`` drops the bias.
    """
    if init == "lecun":
        return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype, rngs=rngs)
    if init == "xavier":
        return nnx.Linear(in_features, out_features, kernel_init=xavier_normal, use_bias=use_bias, dtype=dtype,
                          rngs=rngs)
    if init != "torch":
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    bound = in_features ** -0.5
    uniform = lambda key, shape, dtype=jax.numpy.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return nnx.Linear(in_features, out_features, kernel_init=uniform, bias_init=uniform, use_bias=use_bias,
                      dtype=dtype, rngs=rngs)


class MLP(nnx.Module):
    """``Linear → ReLU → Dropout → … → Linear`` with optional activation on the output.

    Args:
      features: layer widths including the input width, e.g. ``(64, 16)`` is one
        Linear(64, 16); ``(32, 32, 1)`` is Linear(32,32) → ReLU → Dropout → Linear(32,1).
      dropout: dropout rate after every hidden activation (and after the output
        activation when ``activate_output``).
      activate_output: apply ReLU (+ dropout) after the last layer too — encoders do.
      init: ``torch``, ``xavier`` or ``lecun`` initialisation, see :func:`linear`.
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
      flatten: flatten every input after the batch axis first (encoders of images or sequences).
      rngs: ``nnx.Rngs`` for initialisation and the dropout stream.
    """

    def __init__(self, features: Sequence[int], *, dropout: float = 0.0,
                 activate_output: bool = False, init: str = "torch", dtype=None,
                 flatten: bool = False, rngs: nnx.Rngs):
        if len(features) < 2:
            raise ValueError(f"MLP needs at least an input and an output width, got {tuple(features)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {dropout}")
        self.layers = nnx.List([linear(i, o, init=init, dtype=dtype, rngs=rngs)
                                for i, o in zip(features[:-1], features[1:])])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.activate_output = activate_output
        self.flatten = flatten
        self.in_features = features[0]
        self.out_features = features[-1]

    def __call__(self, x: jax.Array, *, return_hidden: bool = False):
        """Applies the MLP; with ``return_hidden`` also returns the input of the last layer."""
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        last = len(self.layers) - 1
        hidden = x
        for i, layer in enumerate(self.layers):
            if i == last:
                hidden = x
            x = layer(x)
            if i < last or self.activate_output:
                x = self.dropout(jax.nn.relu(x))
        return (x, hidden) if return_hidden else x
