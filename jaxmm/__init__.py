"""jaxmm: multimodal learning when modalities compete, overlap, or only work together (JAX/Flax/optax).

``import jaxmm`` stays light: the subpackages load on first attribute access
(``jaxmm.transforms.ogm_ge(...)``), or with an explicit ``import jaxmm.losses``; so does
``jaxmm.load_run`` (:func:`jaxmm.train.evaluate.load_run`: a finished run folder, loaded back).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBPACKAGES = ("counterfactual", "data", "losses", "methods", "metrics", "models", "monitors",
                "tasks", "train", "transforms")

_FUNCTIONS = {"load_run": "jaxmm.train.evaluate"}

__all__ = ["__version__", *_SUBPACKAGES, *_FUNCTIONS]

if TYPE_CHECKING:  # static analysers see the subpackages; nothing is imported at run time
    from jaxmm import (counterfactual, data, losses, methods, metrics, models, monitors,  # noqa: F401
                       tasks, train, transforms)
    from jaxmm.train.evaluate import load_run  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_FUNCTIONS))
