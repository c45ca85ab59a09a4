"""Trainer: what its programs compute (the train step's own tests are in test_step.py and test_compile_step.py)."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.methods import get_method
from jaxmm.tasks import Task
from jaxmm.train import trainer as trainer_module
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.trainer import INIT_COMPILER_OPTIONS, Trainer, resolve_hparams

from ._tiny import MODEL, OPT, tiny_splits


def _leaves(state):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(state)]


def test_the_initialisation_compiled_with_less_optimisation_gives_the_same_state():
    method = get_method("synib", mask="random")
    trainer = Trainer(method, {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT)
    hp = resolve_hparams(method, OPT, [{}, {"lr": 0.5}])
    example = _example()
    state = trainer.init([3, 4], hp, example)  # compiled with INIT_COMPILER_OPTIONS
    default = jax.jit(trainer._init_runs(jax.tree.map(jnp.asarray, example))).lower(
        *trainer._init_args([3, 4], hp)).compile()(*trainer._init_args([3, 4], hp))
    assert INIT_COMPILER_OPTIONS  # the test compares two compilations only while the options differ
    got, want = _leaves(state), _leaves(default)
    assert len(got) == len(want) > 10
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(state.opt_state.hyperparams["learning_rate"], np.float32([OPT.lr, 0.5]))


def _example():
    data = stack_runs([tiny_splits().train])
    return jax.tree.map(lambda x: x[0], next(batches(data, np.arange(40)[None], 16)))


def test_the_cpu_compiler_options_keep_every_step_to_float32_rounding(monkeypatch):
    method = get_method("synib", mask="learned", learned_steps=5)  # inner optimisation, random fills, four passes
    hp = resolve_hparams(method, OPT, [{}, {}])
    data = stack_runs([tiny_splits().train] * 2)
    steps = list(batches(data, np.stack([np.arange(40)] * 2), 16))

    def train(options):
        monkeypatch.setattr(trainer_module, "CPU_COMPILER_OPTIONS", options)
        trainer = Trainer(method, {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT)
        state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], steps[0]))
        losses = []
        for batch in steps:
            state, metrics = trainer.step(state, batch, hp)
            losses.append(np.asarray(metrics["loss"]))
        return losses, _leaves(state.params)

    assert trainer_module.CPU_COMPILER_OPTIONS
    (losses, params), (want_losses, want_params) = train(trainer_module.CPU_COMPILER_OPTIONS), train(None)
    for got, want in zip(losses + params, want_losses + want_params):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)  # -O2 and -O3 may round a value apart


def test_jaxs_fast_compile_switch_is_left_to_jax():
    def trainer():
        return Trainer(get_method("vanilla"), {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT)

    assert trainer()._options == trainer_module.CPU_COMPILER_OPTIONS
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        fast = trainer()
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
    assert fast._options is None and fast._init_options is None  # ours would override its -O0
