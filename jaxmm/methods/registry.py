"""Name → method factory registry (``jaxmm methods`` lists it)."""
from __future__ import annotations

import inspect
from typing import Callable

from jaxmm.methods.base import Method

_FACTORIES: dict[str, Callable[..., Method]] = {}


def register(name: str):
    """Decorator registering ``factory(**options) -> Method`` under ``name``."""

    def wrap(factory):
        if name in _FACTORIES:
            raise ValueError(f"method {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return wrap


def available() -> dict[str, str]:
    """Registered method names -> the first line of their factory's docstring."""
    return {n: (f.__doc__ or "").strip().splitlines()[0] for n, f in sorted(_FACTORIES.items())}


def options_of(name: str) -> dict[str, object]:
    """The static options a method accepts, with their defaults."""
    params = inspect.signature(_factory(name)).parameters
    return {k: p.default for k, p in params.items()}


def get_method(name: str, **options) -> Method:
    """Builds the method ``name`` with static ``options``.

    Raises:
      ValueError: unknown method name or option, listing what is valid.
    """
    factory = _factory(name)
    valid = options_of(name)
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {sorted(unknown)}; valid options: {valid}")
    return factory(**options)


def _factory(name: str):
    if name not in _FACTORIES:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]
