"""Orbax checkpoints of the train state, the loop state and the data position.

Layout: ``<run_dir>/checkpoints/<epoch>/`` (orbax's own, written to a temporary folder and renamed
when complete, so a killed process never leaves a half checkpoint under a step name), plus
``<epoch>/jaxmm_digest.json``: a CRC-32 of every saved array, checked on restore, because orbax
restores flipped bytes in its data files without complaint. A checkpoint that fails to restore or
to match its digest is *damaged*: :meth:`Checkpointer.restore` then falls back to the newest
readable one and sets the damaged ones aside as ``checkpoints/<epoch>.damaged`` (orbax ignores that
name, so later saves of those epochs are not refused).

Saving is synchronous (the loop waits for it anyway): an orbax background thread that fails keeps
the interpreter from exiting, which made a ``checkpoints`` path that is a file hang the process.
Every failure is one line naming the folder and what to do; orbax's own tracebacks, logged from its
threads, are kept off the console while the error they describe is raised here.

With several processes (:mod:`jaxmm.train.distributed`) every process saves and restores (each
writes the shards it holds; orbax renames the folder once all have finished, so a process killed
mid-save leaves no checkpoint under a step name); process 0 writes the digest and sets damaged
checkpoints aside. The folder must be one that every process sees (a shared file system).
"""
from __future__ import annotations

import contextlib
import errno as errno_lib
import json
import logging
import os
import re
import shutil
import sys
import warnings
import zlib

import jax
import numpy as np

from jaxmm.train.distributed import agree

DIGEST_FILE = "jaxmm_digest.json"
DAMAGED_SUFFIX = ".damaged"


def _orbax():
    """``orbax.checkpoint``, imported on first use: it takes about half a second, which a run without
    checkpoints (an experiment's grid) need not pay."""
    import orbax.checkpoint

    return orbax.checkpoint


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot serve the request: no readable checkpoint, or another run's steps."""


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_savable(tree):
    """Typed PRNG keys (nnx dropout streams) become their raw key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_savable(tree, like):
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
                        if _is_key(ref) else x, tree, like)


def _host(x):
    """The host value of a leaf, or ``None`` for an array this process does not hold whole."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0)) if x.is_fully_replicated else None
    return np.asarray(x)


def tree_digest(tree) -> str | None:
    """CRC-32 (hex) over the shapes, dtypes and bytes of every leaf, in flattening order.

    ``None`` when a leaf is sharded across processes (each process holds only a part).
    """
    crc = 0
    for leaf in jax.tree.leaves(tree):
        value = _host(leaf)
        if value is None:
            return None
        value = np.ascontiguousarray(value)
        crc = zlib.crc32(f"{value.dtype.str}{value.shape}".encode(), crc)
        crc = zlib.crc32(value.reshape(-1).view(np.uint8), crc)
    return f"{crc:08x}"


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, shortened."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return f"{type(e).__name__}: {text}"


def _os_reason(e: BaseException) -> str:
    """The operating-system cause of a failed write, as ``strerror`` (orbax/tensorstore wrap it in text)."""
    for cause in (e, e.__cause__, e.__context__):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    m = re.search(r"\[os_error_code='(\d+)'\]", str(e))
    if m:
        return os.strerror(int(m.group(1)))
    return _one_line(e)


@contextlib.contextmanager
def _quiet_orbax():
    """Keeps orbax's thread tracebacks (logged at ERROR through absl) off the console for a moment."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_failed_folders: set[str] = set()


class _LeftoverFilter(logging.Filter):
    """Drops asyncio's "exception was never retrieved" records about a checkpoint folder that failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and isinstance(record.args, dict):
            exc = record.args.get("exception")
        context = getattr(record, "msg", "")
        text = f"{context} {exc}" if exc is not None else str(context)
        return not ("never retrieved" in text and any(folder in text for folder in _failed_folders))


def _drop_orbax_leftovers(folder: str) -> None:
    """After an orbax failure in ``folder``, drops the tracebacks its orphaned operations print later.

    When one read or write fails, orbax closes its event loop while other tensorstore operations are
    in flight; their completion callbacks then report ``RuntimeError: Event loop is closed`` (and
    abandoned coroutines a ``GeneratorExit``) through ``sys.unraisablehook``, unretrieved futures
    are logged by asyncio and never-awaited coroutines warned about at garbage collection: tracebacks
    on stderr at some later moment. The error
    itself has been raised as one line here; everything else goes on as before.
    """
    if not _failed_folders:
        previous = sys.unraisablehook

        def hook(unraisable):
            exc = unraisable.exc_value
            if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
                return
            code = getattr(unraisable.object, "cr_code", None)
            if isinstance(exc, GeneratorExit) and code is not None and "orbax" in code.co_filename:
                return
            previous(unraisable)

        sys.unraisablehook = hook
        logging.getLogger("asyncio").addFilter(_LeftoverFilter())
        warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
    _failed_folders.add(folder)


def check_folder(path: str) -> None:
    """Refuses a checkpoint folder that is a file, or lies under one.

    Raises:
      NotADirectoryError: naming the file and what to do.
    """
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if not os.path.isdir(probe):
        raise NotADirectoryError(f"{probe} is a file, not a folder; move it away or pick another run name")


class Checkpointer:
    """Saves and restores ``{'state', 'loop'}`` pytrees under ``<run_dir>/checkpoints``.

    Args:
      directory: the run folder.
      max_to_keep: number of checkpoints kept.

    Raises:
      NotADirectoryError: ``<directory>/checkpoints`` (or a folder above it) is a file.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(os.path.join(directory, "checkpoints"))
        check_folder(self.directory)
        options = _orbax().CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        with _quiet_orbax():
            self.manager = _orbax().CheckpointManager(self.directory, options=options)

    def epochs(self) -> list[int]:
        """Epochs of the checkpoints present (damaged or not), oldest first."""
        return sorted(self.manager.all_steps())

    def latest_epoch(self) -> int | None:
        """Epoch of the newest checkpoint, or ``None``."""
        return self.manager.latest_step()

    def save(self, epoch: int, tree) -> None:
        """Writes ``tree`` as the checkpoint of ``epoch`` (blocks until written).

        Raises:
          CheckpointError: the folder already holds a checkpoint of ``epoch`` or a later one (orbax
            would skip the save silently; a run directory holds one run).
          OSError: the write failed (disk full, permissions, …); the message names the folder, and the
            checkpoints written before are intact (orbax writes to a temporary folder and renames it
            only when complete; the temporary folder is removed here).
        """
        check_folder(self.directory)
        savable = _to_savable(tree)
        try:
            with _quiet_orbax():
                saved = self.manager.save(epoch, args=_orbax().args.StandardSave(savable))
                self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise ValueError for I/O errors
            _drop_orbax_leftovers(self.directory)
            self._remove_partial(epoch)
            with contextlib.suppress(Exception), _quiet_orbax():
                self.manager.reload()
            previous = self.latest_epoch()
            kept = (f"the checkpoint of epoch {previous} is intact" if previous is not None
                    else "no earlier checkpoint exists")
            reason = _os_reason(e)
            err = OSError(f"could not write the checkpoint of epoch {epoch} to {self.directory} ({reason}); "
                          f"free space there or fix its permissions, then resume ({kept})")
            err.errno = getattr(e, "errno", None) or errno_lib.EIO
            raise err from e
        if not saved:
            later = [s for s in self.epochs() if s >= epoch]
            raise CheckpointError(f"the checkpoint of epoch {epoch} was not written: {self.directory} already "
                                  f"holds epoch(s) {later}, from another run or an earlier attempt; resume "
                                  "that run or start over with --overwrite")
        digest = tree_digest(savable)
        if digest is not None and jax.process_index() == 0:
            self._write_digest(epoch, digest)

    def restore(self, like, epoch: int | None = None):
        """Restores a checkpoint with the structure of ``like``.

        Args:
          like: a tree shaped like the saved one (the arrays' shapes and dtypes are read from it).
          epoch: the checkpoint to read; ``None`` reads the newest readable one: a damaged newer one
            (unreadable, or its arrays differ from the digest written with it) is set aside as
            ``checkpoints/<epoch>.damaged`` with a warning naming it.

        Raises:
          FileNotFoundError: no checkpoint (of ``epoch``) in the folder.
          CheckpointError: the checkpoint of ``epoch``, or every one, cannot be read; naming each
            epoch and its error.
        """
        available = self.epochs()
        if not available:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        if epoch is not None and epoch not in available:
            raise FileNotFoundError(f"no checkpoint of epoch {epoch} in {self.directory}; it holds {available}")
        target = jax.tree.map(_orbax().utils.to_shape_dtype_struct, _to_savable(like))
        errors = {}
        for step in [epoch] if epoch is not None else available[::-1]:
            try:
                restored = self._restore_step(step, target)
            except Exception as e:  # noqa: BLE001 - damage shows up as any of orbax's errors
                _drop_orbax_leftovers(self.directory)
                errors[step] = _one_line(e, 160)
                continue
            for bad, error in errors.items():  # readable older one: the newer ones are damaged, not misfits
                aside = self._set_aside(bad)
                warnings.warn(f"the checkpoint of epoch {bad} in {self.directory} is damaged ({error}); set "
                              f"aside as {aside}, resuming from epoch {step}", stacklevel=2)
            return _from_savable(restored, like)
        if epoch is not None:
            raise CheckpointError(f"the checkpoint of epoch {epoch} in {self.directory} cannot be read "
                                  f"({errors[epoch]}); resume from another epoch or start over with --overwrite")
        listing = "; ".join(f"epoch {s}: {error}" for s, error in errors.items())
        raise CheckpointError(f"no readable checkpoint in {self.directory} ({listing}); the files are damaged "
                              "or the model/optimiser differs from the saved one: start over with --overwrite")

    def close(self) -> None:
        """Releases orbax's resources."""
        self.manager.close()

    # internals -------------------------------------------------------------------------------------------

    def _step_dir(self, epoch: int) -> str:
        return os.path.join(self.directory, str(epoch))

    def _restore_step(self, step: int, target):
        with _quiet_orbax():
            restored = self.manager.restore(step, args=_orbax().args.StandardRestore(target))
        expected = self._read_digest(step)
        if expected is not None:
            actual = tree_digest(restored)
            if actual is not None and actual != expected:
                raise ValueError(f"its arrays do not match the digest written with them ({actual} != {expected})")
        return restored

    def _write_digest(self, epoch: int, digest: str) -> None:
        path = os.path.join(self._step_dir(epoch), DIGEST_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"crc32": digest}, f)
        os.replace(tmp, path)

    def _read_digest(self, epoch: int) -> str | None:
        """The digest written with the checkpoint; ``None`` if absent (older runs, a kill before writing)."""
        path = os.path.join(self._step_dir(epoch), DIGEST_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)["crc32"]  # a damaged digest file is a damaged checkpoint

    def _set_aside(self, epoch: int) -> str:
        aside, n = self._step_dir(epoch) + DAMAGED_SUFFIX, 1
        while os.path.exists(aside):
            n += 1
            aside = f"{self._step_dir(epoch)}{DAMAGED_SUFFIX}{n}"
        agree(lambda: os.replace(self._step_dir(epoch), aside))  # process 0 moves it, the others wait
        with _quiet_orbax():
            self.manager.reload()
        return aside

    def _remove_partial(self, epoch: int) -> None:
        """Removes what a failed save left (orbax's temporary folder, or an unfinished step folder)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                if name.startswith(f"{epoch}.orbax-checkpoint-tmp"):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
