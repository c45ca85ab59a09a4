"""Checks and per-modality helpers shared by the gradient transformations.

Hyper-parameter checks run eagerly in the factories; a value that is a JAX
tracer (a hyper-parameter scheduled by :func:`optax.inject_hyperparams` inside
a jitted step) is not checked, since its value is unknown at trace time.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm import _checks



def _concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def check(ok: Any, method: str, message: str) -> None:
    """Raise ``ValueError(f"{method}: {message}")`` unless ``ok`` (skipped for traced values)."""
    if _concrete(ok) and not bool(ok):
        raise ValueError(f"{method}: {message}")


def check_positive(method: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Check that a scalar hyper-parameter is > 0 (or >= 0 with ``allow_zero``)."""
    if _concrete(value):
        bound = "non-negative" if allow_zero else "positive"
        ok = np.all(np.asarray(value) >= 0) if allow_zero else np.all(np.asarray(value) > 0)
        check(ok, method, f"`{name}` must be {bound}, got {value!r}.")


def check_groups_present(method: str, groups: Iterable[str], leaf_labels: Sequence[str | None], *,
                         what: str = "modalities") -> None:
    """Raise a one-line ValueError if a group the transformation routes by labels no parameter.

    Called by ``init`` (and by epoch hooks), where a misspelt modality or a labels
    spec that does not name the encoders would otherwise make the method a
    silent no-op.

    Args:
      method: the transformation's name, for the message.
      groups: the group labels the transformation acts on (modalities, a head label).
      leaf_labels: the label of every leaf (``None`` for masked leaves), from
        :func:`jaxmm.transforms._tree.leaf_labels`.
      what: the argument that named ``groups``, for the message.
    """
    present = sorted({lab for lab in leaf_labels if lab is not None}, key=str)
    missing = [g for g in groups if g not in present]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ValueError(
            f"{method}: no parameter is labelled {names} (named in `{what}`); the labels present "
            f"are {present}: label each group's parameters with its name, or choose `{what}` "
            f"among these.")


def check_modalities(method: str, modalities: Sequence[str], *, minimum: int = 2) -> tuple[str, ...]:
    """Validate a modality list (distinct strings, at least ``minimum``) and return it as a tuple."""
    if isinstance(modalities, str):
        raise ValueError(
            f"{method}: `modalities` must be a sequence of names such as ('audio', 'visual'), "
            f"got the single string {modalities!r}.")
    modalities = tuple(modalities)
    check(all(isinstance(m, str) for m in modalities), method,
          f"`modalities` must be strings, got {modalities!r}.")
    check(len(set(modalities)) == len(modalities), method,
          f"`modalities` has duplicates: {modalities!r}.")
    check(len(modalities) >= minimum, method,
          f"needs at least {minimum} modalities, got {modalities!r}.")
    return modalities


def check_window(method: str, window: tuple[int, int] | None) -> None:
    """Check an inclusive ``(first_epoch, last_epoch)`` modulation window (``None``: always on)."""
    _checks.check_window("window", window, owner=method)


def required(extra_args: Mapping[str, Any], name: str, method: str, what: str) -> Any:
    """Fetch a keyword extra arg of ``update`` or raise a ValueError saying what to pass."""
    if name not in extra_args or extra_args[name] is None:
        raise ValueError(f"{method}: `update` needs the keyword argument `{name}=` ({what}).")
    return extra_args[name]


def require_params(params: Any, method: str) -> Any:
    """Return ``params`` or raise a ValueError saying that ``update`` needs them."""
    if params is None:
        raise ValueError(f"{method}: `update` needs the current parameters: "
                         f"call `update(updates, state, params, ...)`.")
    return params


def stack_modalities(values: Mapping[str, Any], modalities: Sequence[str], name: str,
                     method: str) -> jax.Array:
    """Stack per-modality scalars ``{modality: value}`` into a float32 ``[M]`` array.

    Keys outside ``modalities`` are ignored; a missing modality raises a ValueError.
    """
    missing = [m for m in modalities if m not in values]
    if missing:
        raise ValueError(f"{method}: `{name}` has no entry for modalities {missing}; "
                         f"pass a mapping with keys {tuple(modalities)}.")
    return jnp.stack([jnp.asarray(values[m], jnp.float32).reshape(()) for m in modalities])


def in_window(window: tuple[int, int] | None, extra_args: Mapping[str, Any],
              method: str) -> jax.Array:
    """Whether the ``epoch`` extra arg lies in the inclusive window (True when ``window`` is None)."""
    if window is None:
        return jnp.asarray(True)
    epoch = jnp.asarray(required(extra_args, "epoch", method, "current epoch, an int"), jnp.int32)
    return (epoch >= window[0]) & (epoch <= window[1])


def dominance(scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The strictly dominant modality and its margin over the runner-up.

    Args:
      scores: ``[M]`` per-modality scores (higher = stronger).

    Returns:
      ``(is_dominant [M] bool, margin)``: a one-hot mask of the modality whose
      score is strictly above every other one (all False on a tie for the top),
      and ``top − runner-up`` (0 on a tie). For two modalities this is the
      ``s_a > s_v`` / ``s_v > s_a`` rule of InfoReg and RedReg.
    """
    top = jnp.argmax(scores)
    is_top = jnp.arange(scores.shape[0]) == top
    runner_up = jnp.max(jnp.where(is_top, -jnp.inf, scores))
    margin = scores[top] - runner_up
    return is_top & (margin > 0), jnp.maximum(margin, 0.0)
