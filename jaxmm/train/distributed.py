"""Several processes, one run: ``jax.distributed`` set up from the environment, and who writes what.

Every process runs the same ``jaxmm train`` command; JAX joins them into one program over every
process's devices (one global mesh, :func:`~jaxmm.train.sharding.make_data_mesh`). What tells a
process that it is one of several (:func:`settings_from_env`):

* ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (0 … N-1), all three set: any set of hosts (``JAX_LOCAL_DEVICE_IDS``, read by
  JAX, picks a process's GPUs);
* a SLURM job step with more than one task (``SLURM_NTASKS``, ``srun``): JAX reads the coordinator,
  count and id from SLURM's variables;
* ``jaxmm train --distributed`` (``mode="on"``): ``jax.distributed.initialize()`` with JAX's own
  detection, for TPU pod slices (and Open MPI, Kubernetes); ``--no-distributed`` (``"off"``) never
  initialises.

On CPU, cross-process collectives go through gloo (``jax_cpu_collectives_implementation``).
Process 0 writes the run's files (config, metrics, results, plots, event files, progress) and
decides about the run folder (:func:`agree`); every process writes its part of the checkpoints.
"""
from __future__ import annotations

import builtins
import dataclasses
import os
from typing import Callable, Mapping, TypeVar

import jax
import numpy as np

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
MODES = ("auto", "on", "off")
_MESSAGE_BYTES = 1024  # the longest error message process 0 hands on (longer ones are cut)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How this process joins a run of several processes (``None`` fields: JAX detects them)."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _int(environ: Mapping[str, str], name: str, low: int) -> int:
    text = environ[name].strip()
    if not text.isdigit() or int(text) < low:
        raise ValueError(f"{name}={environ[name]!r} must be an integer of at least {low}")
    return int(text)


def settings_from_env(environ: Mapping[str, str] | None = None, mode: str = "auto") -> Settings | None:
    """What the environment says about the processes of this run; ``None``: one process.

    Args:
      environ: the environment (default ``os.environ``).
      mode: ``"auto"``: several processes when the three ``JAX_*`` variables say so or a SLURM step
        has more than one task; ``"on"``: always (what the variables do not give, JAX detects);
        ``"off"``: never.

    Raises:
      ValueError: a bad mode, a partial or malformed set of ``JAX_*`` variables, naming what to fix.
    """
    environ = os.environ if environ is None else environ
    if mode not in MODES:
        raise ValueError(f"distributed mode {mode!r} is not one of {list(MODES)}")
    if mode == "off":
        return None
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    given = [n for n in names if environ.get(n, "").strip()]
    if given and len(given) < len(names):
        missing = [n for n in names if n not in given]
        raise ValueError(f"{', '.join(given)} set but not {', '.join(missing)}; set all three "
                         f"({', '.join(names)}) on every process, or none")
    if given:
        count = _int(environ, ENV_NUM_PROCESSES, 1)
        pid = _int(environ, ENV_PROCESS_ID, 0)
        if pid >= count:
            raise ValueError(f"{ENV_PROCESS_ID}={pid} must be below {ENV_NUM_PROCESSES}={count} "
                             "(processes are numbered from 0)")
        address = environ[ENV_COORDINATOR].strip()
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{ENV_COORDINATOR}={address!r} must be host:port (process 0's address and a free port)")
        if count == 1 and mode == "auto":
            return None
        return Settings(address, count, pid)
    slurm_tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
    if mode == "on" or (environ.get("SLURM_JOB_ID") and slurm_tasks and slurm_tasks.isdigit()
                        and int(slurm_tasks) > 1):
        return Settings()
    return None


def initialize(mode: str = "auto", environ: Mapping[str, str] | None = None) -> bool:
    """Joins this process to the others of its run (:func:`settings_from_env`) before JAX starts.

    Call it first, before anything touches a device. Sets the CPU collectives to gloo.

    Returns:
      whether ``jax.distributed`` was initialised (``False``: one process, nothing done).

    Raises:
      ValueError: as :func:`settings_from_env`.
      RuntimeError: JAX's devices were already in use (``jax.distributed`` must come first).
    """
    settings = settings_from_env(environ, mode)
    if settings is None:
        return False
    if jax.distributed.is_initialized():
        return True
    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(settings.coordinator_address, settings.num_processes, settings.process_id)
    except RuntimeError as e:
        raise RuntimeError(f"jax.distributed could not start ({' '.join(str(e).split())[:200]}); it must run "
                           "before any JAX computation, and every process needs the same coordinator") from e
    return True


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes the run's files and shows progress)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process reaches this point (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agree(decide: Callable[[], T]) -> T | None:
    """Runs ``decide`` on process 0 only; the others wait for it and raise the error it raised.

    With one process this is ``decide()``. On the other processes it returns ``None`` once process 0
    has succeeded; when process 0 raised, they raise the same builtin exception type with its
    message (any other type as ``RuntimeError``), so that no process trains on alone.
    """
    if jax.process_count() == 1:
        return decide()
    from jax.experimental import multihost_utils

    result, error, message = None, None, np.zeros(_MESSAGE_BYTES, np.uint8)
    if is_main_process():
        try:
            result = decide()
        except Exception as e:  # noqa: BLE001 - handed to every process, re-raised below
            error = e
            text = f"{type(e).__name__}\n{str(e)}".encode()[:_MESSAGE_BYTES - 1]
            message[:len(text)] = np.frombuffer(text, np.uint8)
            message[len(text):] = 0
            message[-1] = 1
    message = np.asarray(multihost_utils.broadcast_one_to_all(message))
    if error is not None:
        raise error
    if message[-1]:
        kind, _, text = bytes(message[:-1]).rstrip(b"\0").decode(errors="replace").partition("\n")
        cls = getattr(builtins, kind, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, Exception) else RuntimeError
        raise cls(f"process 0: {text}")
    return result
