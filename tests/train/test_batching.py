"""Batching, the input checks of frame augmentation, and training with frames augmented on the device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmm.train.step
from jaxmm.data.types import ArrayDataset, Batch
from jaxmm.methods import get_method
from jaxmm.train.batching import batches, check_augmented, epoch_permutations, stack_runs
from jaxmm.train.loop import fit
from jaxmm.train.sharding import replicate
from jaxmm.train.trainer import resolve_hparams

from ._tiny import MODEL, OPT, tiny_splits, train_cfg
from .test_loop import _with_frames


def _stacked(runs=2, n=6, t=2, side=12):
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (runs, n, t, side, side, 3), dtype=np.uint8)
    return Batch(inputs={"visual": clip, "audio": rng.normal(size=(runs, n, 5)).astype(np.float32)},
                 label=np.tile(np.arange(n), (runs, 1)), index=np.tile(np.arange(n), (runs, 1)), meta={})


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


def test_device_augmentation_trains_compiles_once_and_is_keyed_by_run_and_step(monkeypatch):
    traced = []

    def recording(key, step, inputs, modalities):  # runs when the train step is traced
        traced.append((modalities, {m: x.dtype for m, x in inputs.items()}))
        return augment_inputs(key, step, inputs, modalities)

    augment_inputs = jaxmm.train.step.augment_inputs
    monkeypatch.setattr(jaxmm.train.step, "augment_inputs", recording)
    splits, method, seeds = _with_frames(tiny_splits()), get_method("vanilla"), [0]
    r = fit(method, [splits], seeds, MODEL, OPT, train_cfg(epochs=3, augment_frames=("v",)))
    assert traced == [(("v",), {"a": np.float32, "b": np.float32, "v": np.uint8})]  # the train step only, once
    loss = np.asarray([h["train/loss"] for h in r.history])
    assert np.all(np.isfinite(loss)) and np.all(loss[-1] < loss[0])
    # inside the compiled step the crops follow from the run's key and step alone (both in the checkpointed
    # state, so a resumed run redraws them): the same state gives the same update, another step another one
    trainer, data = r.trainer, stack_runs([splits.train])
    batch = next(batches(data, epoch_permutations(seeds, 0, len(splits.train)), 16))
    hp = replicate(resolve_hparams(method, OPT, [{}]), trainer.mesh)
    start = trainer.init(seeds, hp, jax.tree.map(lambda x: x[0], batch))  # trained runs saturate: no gradient
    update = lambda state: jax.device_get(trainer.step(jax.tree.map(jnp.copy, state), batch, hp)[0].params)
    first = update(start)
    jax.tree.map(np.testing.assert_array_equal, first, update(start))
    later = update(start._replace(step=start.step + 7))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(later)))
    assert trainer.traces == 1 and len(traced) == 1  # 3 epochs with a padded last batch, then these: one trace
