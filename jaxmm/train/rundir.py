"""A run directory holds exactly one run: a lock against two writers, and no silent reuse.

What a run writes there: ``config.json``, ``metrics.jsonl``, ``results.json``, ``curves.png`` and
``checkpoints/``. A new run into a directory that holds one is refused (:func:`claim`) unless the
caller resumes it or overwrites it, which first removes the old checkpoints and outputs.

With several processes (:mod:`jaxmm.train.distributed`) process 0 decides and holds the lock; the
others wait for its decision and raise its error, so no two processes race over the folder.
"""
from __future__ import annotations

import os
import shutil
import socket
import warnings

from jaxmm.train.distributed import agree, is_main_process

RUN_FILES = ("config.json", "metrics.jsonl", "results.json", "curves.png", "modalities.png", "method_logs.png",
             "robustness.json", "robustness.png")
RUN_FOLDERS = ("checkpoints", "tensorboard", "wandb")


def holds_run(run_dir: str) -> bool:
    """Whether ``run_dir`` holds (part of) a run: any of its files or a non-empty checkpoints folder."""
    if any(os.path.exists(os.path.join(run_dir, f)) for f in RUN_FILES):
        return True
    folder = os.path.join(run_dir, "checkpoints")
    return os.path.isdir(folder) and bool(os.listdir(folder))


def claim(run_dir: str, *, resume: bool, overwrite: bool) -> None:
    """Prepares ``run_dir`` for a run: refuses to mix a new run into an old one.

    Raises:
      ValueError: both ``resume`` and ``overwrite``; or the folder holds a run and neither is given.
      NotADirectoryError: ``run_dir`` or its checkpoints path is a file.
    """
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: pass one of them")
    agree(lambda: _claim(run_dir, resume=resume, overwrite=overwrite))


def _claim(run_dir: str, *, resume: bool, overwrite: bool) -> None:
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder; choose another --name or --out-dir")
    if resume or not holds_run(run_dir):
        return
    if not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                              "replace it, or train under another --name")
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            os.remove(path)
    for name in RUN_FOLDERS:
        shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)


class RunLock:
    """``<run_dir>/.lock`` holding ``<pid> <host>`` while a process trains into the run directory.

    A second process is refused while the first lives; a lock left by a process that no longer runs
    (killed with ``kill -9``, a lost node of this host) is detected and taken over with a warning.
    Use as a context manager; the lock is released on exit, also after an exception. With several
    processes, process 0 holds it for all of them (the others raise its error, if any).

    Raises (on entry):
      RuntimeError: another live process holds the lock (naming it), or a process on another host.
    """

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, ".lock")
        self.owner = f"{os.getpid()} {socket.gethostname()}"

    def __enter__(self) -> "RunLock":
        agree(self._acquire)
        return self

    def _acquire(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.owner)
            return

    def __exit__(self, *exc) -> None:
        if not is_main_process():
            return
        try:
            with open(self.path) as f:
                mine = f.read().strip() == self.owner
            if mine:
                os.remove(self.path)
        except FileNotFoundError:
            pass

    def _take_over_if_stale(self) -> None:
        try:
            with open(self.path) as f:
                pid_text, _, host = f.read().strip().partition(" ")
        except FileNotFoundError:
            return  # released meanwhile
        pid = int(pid_text) if pid_text.isdigit() else -1
        if host and host != socket.gethostname():
            raise RuntimeError(f"{self.run_dir} is in use by process {pid} on host {host}; wait for it, or delete "
                               f"{self.path} if that process is gone")
        if pid > 0 and _alive(pid):
            raise RuntimeError(f"{self.run_dir} is in use by process {pid} (still running); wait for it to finish "
                               "or stop it, or train under another --name")
        warnings.warn(f"{self.path}: taking over the lock of process {pid}, which no longer runs", stacklevel=3)
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
