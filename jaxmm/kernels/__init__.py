"""Pallas kernels for the gradient transformations' hot spots, each beside its jnp reference.

A kernel replaces its reference only where :func:`enabled` says so: on a backend
where ``benchmarks/bench_kernels.py`` measured it at least 1.2x faster than XLA
(none yet), or when forced with ``JAXMM_KERNELS``. On the CPU the kernels run in
Pallas interpret mode (a correctness check, not a speed-up).
"""
from jaxmm.kernels._dispatch import DEFAULTS, MIN_SPEEDUP, enabled
from jaxmm.kernels.orthogonal import orthogonal_update, orthogonal_update_reference
from jaxmm.kernels.pareto import pareto_update, pareto_update_reference

__all__ = ["DEFAULTS", "MIN_SPEEDUP", "enabled", "orthogonal_update", "orthogonal_update_reference",
           "pareto_update", "pareto_update_reference"]
