"""Name → method factory registry (``jaxmm methods`` lists it).

The registry derives a method's name, summary (the first line of the factory's docstring) and
options (the factory's keyword arguments with the values it was built with) from the factory, and
stores them in :attr:`Method.info`, from where ``config.json`` records them.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Callable

from jaxmm.methods.base import Method, MethodInfo

_FACTORIES: dict[str, Callable[..., Method]] = {}


def register(name: str):
    """Decorator registering ``factory(**options) -> Method`` under ``name``.

    Registering a name again replaces the factory with a warning (a notebook cell re-run).
    """

    def wrap(factory):
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            warnings.warn(f"method {name!r} was registered before; the new factory replaces it", stacklevel=2)
        _FACTORIES[name] = factory
        return factory

    return wrap


def summary_of(name: str) -> str:
    """The first line of the factory's docstring."""
    doc = (_factory(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def available() -> dict[str, str]:
    """Registered method names -> their summary."""
    return {n: summary_of(n) for n in sorted(_FACTORIES)}


def options_of(name: str) -> dict[str, object]:
    """The static options a method accepts, with their defaults."""
    params = inspect.signature(_factory(name)).parameters
    return {k: p.default for k, p in params.items()}


def get_method(name: str, **options) -> Method:
    """Builds the method ``name`` with static ``options``; ``info`` records name, summary, options.

    Raises:
      ValueError: unknown method name or option, listing what is valid.
    """
    factory = _factory(name)
    valid = options_of(name)
    unknown = set(options) - set(valid)
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {sorted(unknown)}; valid options: {valid}")
    method = factory(**options)
    if not isinstance(method, Method):
        raise TypeError(f"the factory of method {name!r} returned {type(method).__name__}, not a Method")
    return dataclasses.replace(method, info=MethodInfo(name, summary_of(name), {**valid, **options}))


def _factory(name: str):
    if name not in _FACTORIES:
        raise ValueError(f"unknown method {name!r}; available methods: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name]
