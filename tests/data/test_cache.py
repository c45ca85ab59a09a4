"""Tests for jaxmm.data.cache."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxmm.data import cache


class Builder:
    """A build function that counts its calls."""

    def __init__(self, single=False):
        self.calls, self.progress_flags, self.single = 0, [], single

    def __call__(self, config, show_progress):
        self.calls += 1
        self.progress_flags.append(show_progress)
        total = sum(cache.progress(range(config["n"]), show_progress, desc="build", disable=True))
        x = np.arange(config["n"], dtype=np.float32) * config["scale"]
        return x if self.single else {"x": x, "total": np.asarray(total)}


def test_builds_once_per_config_and_reloads(tmp_path):
    build = Builder()
    a = cache.cached(build, {"n": 4, "scale": 2.0}, tmp_path, name="demo")
    b = cache.cached(build, {"scale": 2.0, "n": 4}, tmp_path, name="demo")  # key order is irrelevant
    assert build.calls == 1
    np.testing.assert_array_equal(a["x"], b["x"])
    assert int(b["total"]) == 6
    cache.cached(build, {"n": 4, "scale": 3.0}, tmp_path, name="demo")
    assert build.calls == 2
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".json", ".npz", ".npz"]


def test_single_array_uses_npy_and_name_separates_builders(tmp_path):
    build = Builder(single=True)
    x = cache.cached(build, {"n": 3, "scale": 1.0}, tmp_path, name="one")
    y = cache.cached(build, {"n": 3, "scale": 1.0}, tmp_path, name="one")
    assert isinstance(y, np.ndarray) and build.calls == 1
    np.testing.assert_array_equal(x, y)
    assert len(list(tmp_path.glob("one-*.npy"))) == 1
    cache.cached(build, {"n": 3, "scale": 1.0}, tmp_path, name="two")
    assert build.calls == 2


def test_no_cache_dir_always_builds_and_passes_progress(tmp_path):
    build = Builder()
    cache.cached(build, {"n": 2, "scale": 1.0}, None, show_progress=True)
    cache.cached(build, {"n": 2, "scale": 1.0}, None)
    assert build.calls == 2 and build.progress_flags == [True, False]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_damaged_cache_file_is_rebuilt_with_a_warning(tmp_path, damage):
    build = Builder()
    cache.cached(build, {"n": 200, "scale": 1.0}, tmp_path, name="c")
    (npz,) = tmp_path.glob("c-*.npz")
    data = npz.read_bytes()
    if damage == "garbage":
        npz.write_bytes(b"broken")
    elif damage == "truncated":  # a zip without its directory: BadZipFile, which escaped before
        npz.write_bytes(data[: len(data) // 2])
    else:
        npz.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:120]) + data[120:])
    with pytest.warns(UserWarning, match=rf"^cache file {npz} is unreadable \(.*\); rebuilding it$"):
        out = cache.cached(build, {"n": 200, "scale": 1.0}, tmp_path, name="c")
    assert build.calls == 2
    np.testing.assert_array_equal(out["x"], np.arange(200))
    assert not list(tmp_path.glob("*.tmp"))
    cache.cached(build, {"n": 200, "scale": 1.0}, tmp_path, name="c")
    assert build.calls == 2  # the rebuilt file is read


def test_sources_are_part_of_the_key(tmp_path):
    src, store = tmp_path / "src", tmp_path / "store"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("abc")
    build = Builder()
    run = lambda: cache.cached(build, {"n": 2, "scale": 1.0}, store, name="s", sources=[src])
    run()
    run()
    assert build.calls == 1
    (old,) = store.glob("s-*.npz")
    assert json.loads(old.with_suffix(".json").read_text())["sources"]["files"] == 1
    (src / "sub" / "a.txt").write_text("abcd")  # size changes
    with pytest.warns(UserWarning, match=rf"the source files of cache file {old} changed since it was built"):
        run()
    assert build.calls == 2 and not old.exists() and len(list(store.glob("s-*"))) == 2  # one .npz, its .json
    (new,) = store.glob("s-*.npz")
    st = (src / "sub" / "a.txt").stat()
    os.utime(src / "sub" / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # only the time changes
    with pytest.warns(UserWarning, match="changed since it was built"):
        run()
    (src / "b.txt").write_text("")  # a new file
    with pytest.warns(UserWarning, match="changed since it was built"):
        run()
    assert build.calls == 4 and not new.exists()


def test_source_fingerprint():
    fp = cache.source_fingerprint
    here = Path(__file__).parent
    a = fp([here])
    assert a == fp([str(here)]) and a["files"] > 3 and a["bytes"] > 0
    assert fp([here / "nothing"])["files"] == 0
    assert fp([here / "test_cache.py"])["files"] == 1
    assert fp([here], exclude=[here])["files"] == 0


def test_config_hash_is_stable_and_typed():
    h = cache.config_hash({"a": [1, 2], "b": Path("/x"), "c": np.int64(3)}, "n")
    assert h == cache.config_hash({"c": 3, "b": "/x", "a": (1, 2)}, "n")
    assert h != cache.config_hash({"c": 3, "b": "/x", "a": (1, 2)}, "m")
    assert len(h) == 16
    with pytest.raises(TypeError, match="stable hash"):
        cache.config_hash({"a": object()})


def test_bad_build_result(tmp_path):
    with pytest.raises(TypeError, match="numpy array"):
        cache.cached(lambda config, show_progress: [1, 2], {}, tmp_path, name="bad")
