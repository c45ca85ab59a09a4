"""Methods: one module per method, each registering a factory (see :mod:`jaxmm.methods.registry`)."""
from jaxmm.methods import synib, vanilla  # noqa: F401  (registration side effects)
from jaxmm.methods.base import EpochContext, Method, ModelSpec, StepContext
from jaxmm.methods.registry import available, get_method, options_of, register
