"""Which kernels run by default on which backend, and the override for testing.

A kernel is on by default on a backend only where ``benchmarks/bench_kernels.py``
measured it at least :data:`MIN_SPEEDUP` times faster than the XLA reference
(``benchmarks/results/kernels_<device>.json``). No accelerator measurement exists
yet, so every entry is off; add ``backend: True`` with the result file that shows it.
"""
from __future__ import annotations

import os

import jax

MIN_SPEEDUP = 1.2
ENV_VAR = "JAXMM_KERNELS"

# kernel name -> {backend: on by default}; a backend not listed is off.
DEFAULTS: dict[str, dict[str, bool]] = {
    "orthogonal_update": {},  # RedReg, jaxmm.kernels.orthogonal: not measured on an accelerator
    "pareto_update": {},      # MMPareto, jaxmm.kernels.pareto: not measured on an accelerator
}


def enabled(name: str, backend: str | None = None) -> bool:
    """Whether kernel ``name`` should replace its jnp reference on ``backend``.

    The environment variable ``JAXMM_KERNELS`` overrides the measured defaults
    (read at trace time): ``all``, ``none``, or comma-separated kernel names to
    force on (the others off).

    Args:
      name: a key of :data:`DEFAULTS`.
      backend: ``"cpu"``, ``"gpu"``, ``"tpu"``; ``None``: :func:`jax.default_backend`.

    Raises:
      ValueError: for an unknown kernel name (also one named in ``JAXMM_KERNELS``).
    """
    if name not in DEFAULTS:
        raise ValueError(f"unknown kernel {name!r}; known: {sorted(DEFAULTS)}.")
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        if override in ("all", "none"):
            return override == "all"
        forced = {n.strip() for n in override.split(",") if n.strip()}
        unknown = forced - set(DEFAULTS)
        if unknown:
            raise ValueError(f"{ENV_VAR} names unknown kernels {sorted(unknown)}; known: {sorted(DEFAULTS)}, "
                             "or use 'all' / 'none'.")
        return name in forced
    return DEFAULTS[name].get(backend or jax.default_backend(), False)
