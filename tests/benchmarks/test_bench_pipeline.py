"""Tests for benchmarks/bench_pipeline.py that compile nothing: today's host augmentation, grain batches, timing."""
import numpy as np
import pytest

from benchmarks import bench_pipeline as bench
from jaxmm.data.readers import frames
from jaxmm.data.types import Batch
from jaxmm.train.batching import batches
from jaxmm.train.sharding import make_data_mesh

N, B = 10, 4


def _data(runs=1):
    rng = np.random.default_rng(0)
    return Batch(inputs={"visual": rng.integers(0, 256, (runs, N, 2, 12, 12, 3), dtype=np.uint8),
                         "audio": rng.normal(size=(runs, N, 5, 3, 1)).astype(np.float32)},
                 label=np.tile(np.arange(N, dtype=np.int32) % 3, (runs, 1)),
                 index=np.tile(np.arange(N, dtype=np.int32), (runs, 1)), meta={})


def test_todays_host_augmentation_draws_each_runs_crops_from_seed_and_epoch():
    data, order = _data(runs=2), np.tile(np.arange(N), (2, 1))
    out = list(bench.host_augmented(batches(data, order, B), [3, 4], epoch=1))
    rng = np.random.default_rng([4, 1, 1])  # run 1: generator of (seed 4, epoch 1), batch after batch
    for got, raw in zip(out, batches(data, order, B)):
        np.testing.assert_array_equal(got.inputs["visual"][1], frames.crop_flip(raw.inputs["visual"][1], rng))
        np.testing.assert_array_equal(got.inputs["audio"], raw.inputs["audio"])
    again = list(bench.host_augmented(batches(data, order, B), [3, 4], epoch=1))
    np.testing.assert_array_equal(out[0].inputs["visual"], again[0].inputs["visual"])
    other = list(bench.host_augmented(batches(data, order, B), [3, 4], epoch=2))
    assert not np.array_equal(out[0].inputs["visual"], other[0].inputs["visual"])


def test_grain_batches_visit_every_example_once_per_epoch_padded_to_whole_batches():
    pytest.importorskip("grain")
    data = _data()
    out = list(bench.grain_batches(data, 3 * B, epochs=2, workers=0))
    assert len(out) == 2  # grain batches across epochs: 20 examples in batches of 12, the last padded by 4
    valid = np.concatenate([b.meta["valid"][0] for b in out]).astype(bool)
    assert valid.sum() == 2 * N and not valid[-4:].any()
    index = np.concatenate([b.index[0] for b in out])[valid]
    assert sorted(index[:N]) == sorted(index[N:]) == list(range(N))  # each epoch a permutation
    assert not np.array_equal(index[:N], np.arange(N))  # shuffled
    for b in out:
        assert b.inputs["visual"].shape == (1, 3 * B, 2, 12, 12, 3) and b.inputs["visual"].dtype == np.uint8
        np.testing.assert_array_equal(b.inputs["visual"][0], data.inputs["visual"][0, b.index[0]])
        np.testing.assert_array_equal(b.label[0], data.label[0, b.index[0]])


def test_timed_leaves_the_first_item_out():
    seconds, examples, first = bench.timed(iter([1, 2, 3]), lambda x: None, lambda x: 10 * x)
    assert examples == 50 and seconds >= 0 and first >= 0


def test_every_pipeline_delivers_the_same_examples_to_the_mesh():
    args = bench.parse_args(["--batch", str(B), "--epochs", "2", "--grain-workers"])
    variants = bench.pipelines(args, _data(), make_data_mesh())
    assert set(variants) == {"batching (host gather only)", "batching + device_put (no prefetch)", bench.NEW,
                             bench.TODAY}
    for name, run in variants.items():
        seconds, examples, _ = run()
        assert examples == 2 * N - B, name  # two epochs less the first batch (timed apart)
