"""Tests for jaxmm.data.prefetch: same batches, same order, errors surface, clean shutdown."""
import threading
import time

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmm.data.prefetch import prefetch_to_mesh
from jaxmm.data.types import ArrayDataset
from jaxmm.train.batching import batches, epoch_permutations, stack_runs
from jaxmm.train.sharding import make_data_mesh, shard_batch

SEEDS = (0, 3)


def stacked():
    rng = np.random.default_rng(0)
    runs = [ArrayDataset(inputs={"a": rng.normal(size=(21, 4)).astype(np.float32),
                                 "b": rng.integers(0, 255, (21, 2, 3), dtype=np.uint8)},
                         label=rng.integers(0, 3, 21).astype(np.int32), num_classes=3,
                         meta={"source": rng.integers(0, 4, 21).astype(np.int32)}) for _ in SEEDS]
    return stack_runs(runs)


def epoch(data, e=1, batch_size=4):
    return batches(data, epoch_permutations(SEEDS, e, 21), batch_size)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "jaxmm-prefetch"]


def test_same_batches_in_the_same_order_on_the_mesh():
    mesh, data = make_data_mesh(), stacked()
    expected = [shard_batch(b, mesh) for b in epoch(data)]
    got = list(prefetch_to_mesh(epoch(data), mesh, size=2))
    assert len(got) == len(expected) == 6
    sharding = NamedSharding(mesh, P(None, "data"))
    for g, e in zip(got, expected):
        assert jax.tree.structure(g) == jax.tree.structure(e)
        for gl, el in zip(jax.tree.leaves(g), jax.tree.leaves(e)):
            assert isinstance(gl, jax.Array) and gl.sharding.is_equivalent_to(sharding, gl.ndim)
            assert gl.dtype == el.dtype
            np.testing.assert_array_equal(np.asarray(gl), np.asarray(el))
    np.testing.assert_array_equal(np.asarray(got[-1].meta["valid"]), [[1, 0, 0, 0]] * 2)  # 21 = 5*4 + 1
    assert not prefetch_threads()


def test_producer_exception_surfaces_after_the_earlier_batches():
    mesh, data = make_data_mesh(), stacked()

    def failing():
        for i, b in enumerate(epoch(data)):
            if i == 2:
                raise RuntimeError("augmentation broke on batch 2")
            yield b

    it = prefetch_to_mesh(failing(), mesh, size=1)
    first = [next(it), next(it)]
    with pytest.raises(RuntimeError, match="augmentation broke on batch 2"):
        next(it)
    expected = list(epoch(data))[:2]
    for g, e in zip(first, expected):
        np.testing.assert_array_equal(np.asarray(g.index), e.index)
    assert not prefetch_threads()


def test_bounded_lookahead_and_clean_shutdown_on_early_exit():
    mesh, data = make_data_mesh(), stacked()
    pulled = []

    def counted():
        for b in epoch(data):
            pulled.append(int(b.index[0, 0]))
            yield b

    it = prefetch_to_mesh(counted(), mesh, size=2)
    next(it)
    time.sleep(0.3)  # let the producer fill the queue
    assert len(pulled) <= 1 + 2 + 1  # consumed + queued + the one waiting to be put
    it.close()
    assert not prefetch_threads()
    assert len(pulled) <= 4


def test_bad_size():
    with pytest.raises(ValueError, match="at least 1"):
        prefetch_to_mesh([], make_data_mesh(), size=0)
