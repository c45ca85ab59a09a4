"""A small on-disk cache for preprocessed arrays.

``cached(build_fn, config, cache_dir)`` stores what ``build_fn`` returns as
``<cache_dir>/<name>-<hash>.npz`` (a dict of arrays) or ``.npy`` (one array),
where ``hash`` is a stable SHA-256 of ``name`` and the JSON-canonical ``config``;
a ``.json`` file beside it records the config for humans. Writes are atomic
(temporary file + rename), so an interrupted build never leaves a half file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
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


def progress(iterable: Iterable, enabled: bool, **tqdm_kwargs) -> Iterable:
    """Wraps ``iterable`` in a tqdm bar when ``enabled`` (for use inside build functions)."""
    return tqdm(iterable, **tqdm_kwargs) if enabled else iterable


def _write_atomic(path: Path, result) -> None:
    """Saves ``result`` to ``path`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(result, np.ndarray):
                np.save(f, result, allow_pickle=False)
            else:
                np.savez(f, **result)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(build_fn: Callable[..., Any], config: Mapping[str, Any], cache_dir: str | os.PathLike | None, *,
           name: str | None = None, show_progress: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Returns ``build_fn(config, show_progress)``, computed once per distinct config.

    Args:
      build_fn: ``(config, show_progress) -> np.ndarray | Mapping[str, np.ndarray]``; it
        may use :func:`progress` to show a bar when ``show_progress`` is set.
      config: everything the result depends on (JSON-able values; part of the key).
      cache_dir: folder for cache files (created if needed); ``None`` disables caching.
      name: file prefix and part of the key (default ``build_fn``'s qualified name).
      show_progress: passed to ``build_fn``.

    Returns:
      the array, or a dict of arrays, as built or as loaded from the cache.
    """
    name = name or f"{build_fn.__module__}.{getattr(build_fn, '__qualname__', type(build_fn).__qualname__)}"
    if cache_dir is None:
        return _check(build_fn(dict(config), show_progress), name)
    key = config_hash(config, name)
    cache_dir = Path(cache_dir)
    stem = f"{name.rsplit('.', 1)[-1]}-{key}"
    for path in (cache_dir / f"{stem}.npz", cache_dir / f"{stem}.npy"):
        if path.exists():
            try:
                result = _load(path)
                logger.info("loaded %s from cache %s", name, path)
                return result
            except (ValueError, OSError, EOFError) as e:
                logger.warning("cache file %s is unreadable (%s); rebuilding", path, e)
    result = _check(build_fn(dict(config), show_progress), name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{stem}.{'npy' if isinstance(result, np.ndarray) else 'npz'}"
    _write_atomic(path, result)
    (cache_dir / f"{stem}.json").write_text(json.dumps({"name": name, "config": _canonical(config)}, indent=1))
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
