"""A small on-disk cache for preprocessed arrays.

``cached(build_fn, config, cache_dir)`` stores what ``build_fn`` returns as
``<cache_dir>/<name>-<hash>.npz`` (a dict of arrays) or ``.npy`` (one array),
where ``hash`` is a stable SHA-256 of ``name`` and the JSON-canonical ``config``;
a ``.json`` file beside it records the config for humans. Writes are atomic
(temporary file + rename), so an interrupted build never leaves a half file.

With ``sources`` (the files or folders the build reads), the file is
``<name>-<hash>-<fingerprint>``: the fingerprint covers every source file's
relative path, size and modification time, so a changed, added or removed
source file makes a new key; the build runs again (with a warning naming the
stale file, which is then removed). A cache file that cannot be read
(truncated, damaged) is rebuilt with a warning naming it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger("jaxmm.data")


def _canonical(value: Any) -> Any:
    """Converts a config value to JSON-able builtins, rejecting what has no stable form."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"config value {value!r} of type {type(value).__name__} has no stable hash; "
                    "use str/int/float/bool/None, lists, tuples, dicts or paths")


def config_hash(config: Mapping[str, Any], name: str = "") -> str:
    """A stable 16-hex-digit hash of ``name`` and ``config`` (key order does not matter)."""
    text = json.dumps({"name": name, "config": _canonical(config)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_fingerprint(sources: Iterable[str | os.PathLike], *,
                       exclude: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """A cheap fingerprint of the files under ``sources``: sorted relative paths, sizes and mtimes.

    Folders are walked recursively (following links, each folder once); nothing is read but the
    file metadata.

    Args:
      sources: files or folders (a missing one counts as empty).
      exclude: folders left out (e.g. a cache folder inside the data folder).

    Returns:
      ``{"fingerprint": 16 hex digits, "files": count, "bytes": total size}``.
    """
    skip = {os.path.realpath(p) for p in exclude}
    digest = hashlib.sha256()
    files = size = 0
    for root in sorted({os.path.abspath(os.fspath(p)) for p in sources}):
        digest.update(f"root {root}\n".encode())
        entries = []
        if os.path.isfile(root):
            entries.append(("", os.stat(root)))
        seen = set()
        for folder, dirs, names in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            st = os.stat(folder)
            if real in skip or (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()
            for name in names:
                path = os.path.join(folder, name)
                try:
                    entries.append((os.path.relpath(path, root), os.stat(path)))
                except OSError:  # a dangling link
                    continue
        for rel, st in sorted(entries, key=lambda e: e[0]):
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            files += 1
            size += st.st_size
    return {"fingerprint": digest.hexdigest()[:16], "files": files, "bytes": size}


def progress(iterable: Iterable, enabled: bool, **tqdm_kwargs) -> Iterable:
    """Wraps ``iterable`` in a tqdm bar when ``enabled`` (for use inside build functions)."""
    return tqdm(iterable, **tqdm_kwargs) if enabled else iterable


def _write_atomic(path: Path, result) -> None:
    """Saves ``result`` to ``path`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(result, bytes):
                f.write(result)
            elif isinstance(result, np.ndarray):
                np.save(f, result, allow_pickle=False)
            else:
                np.savez(f, **result)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(build_fn: Callable[..., Any], config: Mapping[str, Any], cache_dir: str | os.PathLike | None, *,
           name: str | None = None, show_progress: bool = False,
           sources: Iterable[str | os.PathLike] | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """Returns ``build_fn(config, show_progress)``, computed once per distinct config and source files.

    Args:
      build_fn: ``(config, show_progress) -> np.ndarray | Mapping[str, np.ndarray]``; it
        may use :func:`progress` to show a bar when ``show_progress`` is set.
      config: everything the result depends on (JSON-able values; part of the key).
      cache_dir: folder for cache files (created if needed); ``None`` disables caching.
      name: file prefix and part of the key (default ``build_fn``'s qualified name).
      show_progress: passed to ``build_fn``.
      sources: files or folders the build reads; their :func:`source_fingerprint` (paths, sizes,
        mtimes) is part of the key, so changed source files are rebuilt. ``None``: the config only.

    Returns:
      the array, or a dict of arrays, as built or as loaded from the cache.

    Warns:
      UserWarning: a cache file that cannot be read, or one built from source files that changed
        since; both are rebuilt (and the stale file removed).
    """
    name = name or f"{build_fn.__module__}.{getattr(build_fn, '__qualname__', type(build_fn).__qualname__)}"
    if cache_dir is None:
        return _check(build_fn(dict(config), show_progress), name)
    key = config_hash(config, name)
    cache_dir = Path(cache_dir)
    base = f"{name.rsplit('.', 1)[-1]}-{key}"
    fingerprint = None
    if sources is not None:
        sources = sorted(os.path.abspath(os.fspath(p)) for p in sources)
        fingerprint = source_fingerprint(sources, exclude=[cache_dir])
    stem = base if fingerprint is None else f"{base}-{fingerprint['fingerprint']}"
    for path in (cache_dir / f"{stem}.npz", cache_dir / f"{stem}.npy"):
        if path.exists():
            try:
                result = _load(path)
                logger.info("loaded %s from cache %s", name, path)
                return result
            except Exception as e:  # noqa: BLE001 - truncated zips raise BadZipFile, damaged ones zlib errors
                reason = " ".join(str(e).split())[:160] or type(e).__name__
                warnings.warn(f"cache file {path} is unreadable ({type(e).__name__}: {reason}); rebuilding it",
                              stacklevel=2)
    stale = sorted(p for p in cache_dir.glob(f"{base}-*") if p.suffix in (".npz", ".npy") and p.stem != stem) \
        if fingerprint is not None and cache_dir.is_dir() else []
    if stale:
        warnings.warn(f"the source files of cache file {stale[0]} changed since it was built (sizes or times of "
                      f"files under {', '.join(sources)}); rebuilding it",
                      stacklevel=2)
    result = _check(build_fn(dict(config), show_progress), name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{stem}.{'npy' if isinstance(result, np.ndarray) else 'npz'}"
    _write_atomic(path, result)
    record = {"name": name, "config": _canonical(config)}
    if fingerprint is not None:
        record["sources"] = {"paths": sources, **fingerprint}
    _write_atomic(cache_dir / f"{stem}.json", json.dumps(record, indent=1).encode())
    legacy = [p for p in (cache_dir / f"{base}.npz", cache_dir / f"{base}.npy")] if fingerprint is not None else []
    for old in stale + legacy:  # the same config built from older source files (or before fingerprints)
        for p in (old, old.with_suffix(".json")):
            p.unlink(missing_ok=True)
    logger.info("cached %s in %s", name, path)
    return result


def _load(path: Path):
    """Reads a cache file written by :func:`_write_atomic`."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as loaded:
        return {k: loaded[k] for k in loaded.files}


def _check(result, name: str):
    """Validates what a build function returned."""
    if isinstance(result, np.ndarray):
        return result
    if isinstance(result, Mapping) and all(isinstance(v, np.ndarray) for v in result.values()):
        return dict(result)
    raise TypeError(f"{name} must return a numpy array or a dict of numpy arrays, got {type(result).__name__}")
