"""InfoReg's information-acquisition monitor: the prime learning window from Fisher traces.

Per modality ``m`` and epoch ``j``, the Fisher-trace proxy is
``T_j = Σ_steps Σ_W mean(g_W ⊙ g_W)`` over the encoder's weight tensors ``W``
(conv and linear kernels), with ``g`` the gradient actually used for the step.
At the start of epoch ``e`` (history pre-padded with ``window`` zeros)::

    k_e = (mean(T[-window:]) − mean(T[-window-1:-1])) / mean(T[-window:])
        = (T_{e−1} − T_{e−window−1}) / Σ_{j=e−window}^{e−1} T_j,

and ``k_0 = 1``; InfoReg regulates while ``k_e > 0.05`` (re-evaluated every epoch).

Usage per step: :func:`observe_epoch` (closes the previous epoch when the
epoch number changes and refreshes ``rate``), then :func:`accumulate` with the
step's per-modality Fisher terms (:func:`fisher_term`).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


class InformationAcquisitionState(NamedTuple):
    """Monitor state (all leaves are arrays; per-modality axis first).

    Attributes:
      history: ``[M, window + 1]`` float32, the last ``window + 1`` completed
        epoch traces, oldest first (zeros before training).
      current: ``[M]`` float32 trace accumulated in the running epoch.
      steps: int32, steps accumulated in the running epoch.
      completed: int32, number of completed epochs.
      rate: ``[M]`` float32 ``k_e`` of the running epoch.
      epoch: int32, the running epoch (−1 before the first step).
    """

    history: jax.Array
    current: jax.Array
    steps: jax.Array
    completed: jax.Array
    rate: jax.Array
    epoch: jax.Array


def init_information_acquisition(num_modalities: int, window: int = 10) -> InformationAcquisitionState:
    """Empty monitor for ``num_modalities`` modalities and a ``window``-epoch comparison."""
    if window < 1:
        raise ValueError(f"information_acquisition: `window` must be >= 1, got {window}.")
    return InformationAcquisitionState(
        history=jnp.zeros((num_modalities, window + 1), jnp.float32),
        current=jnp.zeros((num_modalities,), jnp.float32),
        steps=jnp.zeros((), jnp.int32),
        completed=jnp.zeros((), jnp.int32),
        rate=jnp.ones((num_modalities,), jnp.float32),
        epoch=jnp.full((), -1, jnp.int32),
    )


def acquisition_rate(history: jax.Array, completed: jax.Array) -> jax.Array:
    """``k_e`` from a ``[M, window + 1]`` history (1 before any epoch has completed)."""
    denom = jnp.sum(history[:, 1:], axis=1)
    rate = jnp.where(denom > 0, (history[:, -1] - history[:, 0]) / jnp.where(denom > 0, denom, 1.0),
                     0.0)
    return jnp.where(completed > 0, rate, 1.0)


def observe_epoch(state: InformationAcquisitionState, epoch) -> InformationAcquisitionState:
    """Close the running epoch if ``epoch`` changed (and it had steps); refresh ``rate``."""
    epoch = jnp.asarray(epoch, jnp.int32)
    close = (epoch != state.epoch) & (state.steps > 0)
    history = jnp.where(close, jnp.concatenate([state.history[:, 1:], state.current[:, None]], 1),
                        state.history)
    completed = state.completed + close.astype(jnp.int32)
    return InformationAcquisitionState(
        history=history,
        current=jnp.where(close, 0.0, state.current),
        steps=jnp.where(close, 0, state.steps),
        completed=completed,
        rate=acquisition_rate(history, completed),
        epoch=epoch,
    )


def accumulate(state: InformationAcquisitionState, fisher: jax.Array) -> InformationAcquisitionState:
    """Add one step's ``[M]`` Fisher terms to the running epoch's traces."""
    return state._replace(current=state.current + jnp.asarray(fisher, jnp.float32),
                          steps=state.steps + 1)


def fisher_term(weight_grads: Sequence[jax.Array]) -> jax.Array:
    """One step's trace term ``Σ_W mean(g_W²)`` over a modality's weight-tensor gradients."""
    return sum((jnp.mean(jnp.square(g.astype(jnp.float32))) for g in weight_grads),
               jnp.zeros((), jnp.float32))
