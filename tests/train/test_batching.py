"""Batching: training-time frame augmentation per run, and its input checks."""
import numpy as np
import pytest

from jaxmm.data.readers import frames
from jaxmm.data.types import ArrayDataset, Batch
from jaxmm.train.batching import augment_frames, batches, check_augmented, stack_runs


def _stacked(runs=2, n=6, t=2, side=12):
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (runs, n, t, side, side, 3), dtype=np.uint8)
    return Batch(inputs={"visual": clip, "audio": rng.normal(size=(runs, n, 5)).astype(np.float32)},
                 label=np.tile(np.arange(n), (runs, 1)), index=np.tile(np.arange(n), (runs, 1)), meta={})


def _epoch(data, seeds, epoch):
    order = np.tile(np.arange(data.label.shape[1]), (len(seeds), 1))
    return list(augment_frames(batches(data, order, 4), ("visual",), seeds, epoch))


def test_each_run_draws_its_own_crops_from_seed_and_epoch():
    data = _stacked()
    first = _epoch(data, [3, 4], epoch=1)
    again = _epoch(data, [3, 4], epoch=1)
    for a, b, raw in zip(first, again, batches(data, np.tile(np.arange(6), (2, 1)), 4)):
        assert a.inputs["visual"].dtype == np.uint8 and a.inputs["visual"].shape == raw.inputs["visual"].shape
        np.testing.assert_array_equal(a.inputs["visual"], b.inputs["visual"])  # resumable: same seed, same epoch
        np.testing.assert_array_equal(a.inputs["audio"], raw.inputs["audio"])  # other inputs untouched
        np.testing.assert_array_equal(a.label, raw.label)
        assert not np.array_equal(a.inputs["visual"], raw.inputs["visual"])
    # run r of the batch equals crop_flip with the generator of (seed_r, epoch) applied batch after batch
    rng = np.random.default_rng([4, 1, 1])
    for batch, raw in zip(first, batches(data, np.tile(np.arange(6), (2, 1)), 4)):
        np.testing.assert_array_equal(batch.inputs["visual"][1], frames.crop_flip(raw.inputs["visual"][1], rng))
    other_epoch = _epoch(data, [3, 4], epoch=2)
    assert not np.array_equal(other_epoch[0].inputs["visual"], first[0].inputs["visual"])


def test_check_augmented_names_the_problem():
    data = _stacked()
    check_augmented(data, ("visual",))
    with pytest.raises(ValueError, match=r"names 'video', which is not an input of this dataset \(inputs: "
                                         r"\['audio', 'visual'\]\)"):
        check_augmented(data, ("video",))
    with pytest.raises(ValueError, match=r"'audio' must be uint8 frames"):
        check_augmented(data, ("audio",))


def test_stack_runs_shares_an_array_every_run_holds_instead_of_copying_it():
    shared, own = np.arange(12.0).reshape(6, 2), [np.full((6, 2), float(r)) for r in range(3)]
    datasets = [ArrayDataset(inputs={"a": shared, "b": own[r]}, label=np.zeros(6, np.int32), num_classes=2)
                for r in range(3)]
    data = stack_runs(datasets)
    assert np.shares_memory(data.inputs["a"], shared) and not data.inputs["a"].flags.writeable
    np.testing.assert_array_equal(data.inputs["a"], np.stack([shared] * 3))
    np.testing.assert_array_equal(data.inputs["b"], np.stack(own))
