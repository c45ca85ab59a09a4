"""Trainer.compile_step: the train step compiled ahead, while the initialisation compiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.tasks import Task
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.loop import fit
from jaxmm.train.trainer import Trainer, resolve_hparams

from ._tiny import MODEL, OPT, tiny_splits, train_cfg


def _trainer_and_batches(seeds=(0, 1)):
    method = get_method("synib", mask="random")
    data = stack_runs([tiny_splits().train] * len(seeds))
    hp = resolve_hparams(method, OPT, [{}] * len(seeds))
    trainer = Trainer(method, {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT)
    order = np.stack([np.arange(40)] * len(seeds))
    return trainer, hp, list(batches(data, order, 16))


def _steps(trainer, hp, all_batches, ahead: bool):
    if ahead:
        trainer.compile_step([0, 1], hp, all_batches[0])
    state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], all_batches[0]))
    losses = []
    for batch in all_batches:
        state, metrics = trainer.step(state, batch, hp)
        losses.append(np.asarray(metrics["loss"]))
    return state, losses


def test_the_step_compiled_ahead_runs_and_equals_the_jit_step():
    ahead, hp, all_batches = _trainer_and_batches()
    state_ahead, losses_ahead = _steps(ahead, hp, all_batches, ahead=True)
    plain, _, _ = _trainer_and_batches()
    state_plain, losses_plain = _steps(plain, hp, all_batches, ahead=False)
    assert ahead._compiling is not None and ahead.traces == 1  # every step ran the program compiled ahead
    np.testing.assert_array_equal(np.stack(losses_ahead), np.stack(losses_plain))
    for a, b in zip(jax.tree.leaves(state_ahead.params), jax.tree.leaves(state_plain.params)):
        np.testing.assert_array_equal(a, b)


def test_arguments_the_ahead_program_does_not_take_fall_back_to_jit():
    trainer, hp, all_batches = _trainer_and_batches()
    trainer.compile_step([0, 1], hp, all_batches[0])
    state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], all_batches[0]))
    short = jax.tree.map(lambda x: x[:, :8], all_batches[0])  # another batch size
    new_state, metrics = trainer.step(state, short, hp)
    assert trainer._compiling is None and trainer.traces == 2  # refused before running, then jitted
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    assert int(new_state.step[0]) == 1


def test_an_error_while_compiling_ahead_is_raised_by_the_step():
    trainer, hp, all_batches = _trainer_and_batches()
    bad = dict(hp, lam=jnp.zeros(3))  # three runs' values for two runs: the vmap fails while tracing
    trainer.compile_step([0, 1], bad, all_batches[0])
    state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], all_batches[0]))
    with pytest.raises(ValueError, match="vmap"):
        trainer.step(state, all_batches[0], hp)


def test_fit_compiles_the_step_ahead_once():
    r = fit(get_method("vanilla"), [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=2))
    assert r.trainer._compiling is not None and r.trainer.traces == 1
