"""jaxmm.train.datacache: datasets loaded, and run sets stacked, once per process (threads included)."""
import threading
import time

import numpy as np
import pytest
from test_runs import tiny_config

from jaxmm.data.synthetic import imbalance
from jaxmm.data.types import ArrayDataset
from jaxmm.train import runs
from jaxmm.train.batching import stack_runs
from jaxmm.train.datacache import DataCache


def _dataset(value: float) -> ArrayDataset:
    return ArrayDataset(inputs={"a": np.full((4, 2), value, np.float32)}, label=np.arange(4) % 2, num_classes=2)


def test_threads_asking_for_one_key_share_one_load():
    cache, calls, got = DataCache(), [], []

    def load():
        calls.append(1)
        time.sleep(0.05)  # the other threads arrive while this one loads
        return object()

    threads = [threading.Thread(target=lambda: got.append(cache.splits("k", load))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)
    assert cache.splits("other", lambda: "b") == "b"


def test_a_failed_load_is_tried_again():
    cache = DataCache()
    with pytest.raises(OSError, match="disk"):
        cache.splits("k", lambda: (_ for _ in ()).throw(OSError("disk")))
    assert cache.splits("k", lambda: 7) == 7


def test_stacked_run_sets_are_stacked_once_and_equal_stack_runs():
    cache = DataCache()
    a, b = _dataset(1.0), _dataset(2.0)
    first = cache.stacked([a, b, a])
    assert cache.stacked([a, b, a]) is first  # same datasets, same order: the same arrays
    want = stack_runs([a, b, a])
    np.testing.assert_array_equal(first.inputs["a"], want.inputs["a"])
    np.testing.assert_array_equal(first.label, want.label)
    assert cache.stacked([b, a, a]) is not first
    np.testing.assert_array_equal(cache.stacked([b, a, a]).inputs["a"][:, 0, 0], [2.0, 1.0, 1.0])


def test_runs_sharing_a_cache_load_each_dataset_once_and_train_the_same(monkeypatch, compilation_cache):
    loads = []  # the three runs compile the same programs: the persistent cache compiles them once

    def counting(name, seed, **options):
        loads.append((name, seed))
        return imbalance_splits(seed, **options)

    imbalance_splits = lambda seed, sizes: imbalance.splits(seed, imbalance.ImbalanceConfig(), sizes)
    monkeypatch.setattr(runs, "load_dataset", counting)
    cache = DataCache()
    shared = [runs.run(tiny_config(), None, data_cache=cache)[0] for _ in range(2)]
    assert sorted(loads) == [("imbalance", 0), ("imbalance", 1)]
    assert shared[1].splits[0] is shared[0].splits[0]
    (alone,) = runs.run(tiny_config(), None)
    assert len(loads) == 4  # without the cache the datasets are loaded again
    assert [r["acc"] for r in shared[1].fit.test] == [r["acc"] for r in alone.fit.test]
    np.testing.assert_array_equal(shared[0].fit.history[-1]["train/loss"], alone.fit.history[-1]["train/loss"])
