"""Argument checks shared by every layer of jaxmm (the bottom module: imports only the stdlib)."""
from __future__ import annotations

from typing import Any, Iterable


def check_choice(name: str, value: Any, choices: Iterable[Any], *, owner: str | None = None) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is one of ``choices``.

    Args:
      name: the option's name, as the caller spells it (``"metric"``).
      value: the value given.
      choices: the valid values.
      owner: optional prefix naming the function or method (``"ogm_ge"``).

    Raises:
      ValueError: ``"[owner: ]`name` must be one of 'a', 'b'; got 'c'."``
    """
    choices = tuple(choices)
    if value not in choices:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}`{name}` must be one of {', '.join(map(repr, choices))}; "
                         f"got {value!r}.")


def check_positive(name: str, value: float, *, owner: str | None = None, allow_zero: bool = False) -> None:
    """Raise a one-line ``ValueError`` unless the number ``value`` is > 0 (>= 0 with ``allow_zero``)."""
    if not (value >= 0 if allow_zero else value > 0):
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}`{name}` must be {'non-negative' if allow_zero else 'positive'}; got {value!r}.")


def check_window(name: str, window, *, owner: str | None = None) -> tuple[int, int] | None:
    """An inclusive ``(first, last)`` epoch window as a tuple of ints (lists from JSON/CLI accepted), or ``None``.

    Raises:
      ValueError: not two non-negative epochs with ``first <= last``.
    """
    if window is None:
        return None
    prefix = f"{owner}: " if owner else ""
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise ValueError(f"{prefix}`{name}` must be (first_epoch, last_epoch) or None; got {window!r}.")
    first, last = (int(e) for e in window)
    if not 0 <= first <= last:
        raise ValueError(f"{prefix}`{name}` must satisfy 0 <= first <= last; got {window!r}.")
    return first, last
