"""Methods: one module per method, each registering a factory (see :mod:`jaxmm.methods.registry`).

Every public module of this package is imported here, so that adding a method
is adding its file.
"""
import importlib
import pkgutil

from jaxmm.methods.base import (
    EpochContext, EpochHook, GradientTransform, Method, MethodInfo, ModelSpec, RunState, StepContext, Terms)
from jaxmm.methods.registry import available, get_method, options_of, register

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")
