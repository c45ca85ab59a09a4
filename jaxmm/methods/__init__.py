"""Methods: one module per method, each registering a factory (see :mod:`jaxmm.methods.registry`).

Every public module of this package is imported here, so that adding a method
is adding its file.
"""
import importlib
import importlib.metadata
import pkgutil

from jaxmm.methods.base import (
    EpochContext, EpochHook, GradientTransform, Method, MethodInfo, ModelSpec, RunState, StepContext, Terms)
from jaxmm.methods.registry import available, get_method, options_of, register



def load_plugins(modules=()) -> None:
    """Imports ``modules`` (names of modules that register methods) and every installed
    ``jaxmm.methods`` entry point, so their methods are usable from ``jaxmm train``.

    Raises:
      ModuleNotFoundError: a named module cannot be imported (the message names it).
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"--plugin {name}: cannot import it ({e}); put its folder on PYTHONPATH "
                                      "or install it") from e
    for entry in importlib.metadata.entry_points(group="jaxmm.methods"):
        entry.load()


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")
