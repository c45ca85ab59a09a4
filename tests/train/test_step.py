import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.methods import get_method
from jaxmm.tasks import Task
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.step import masked_mean, per_term_gradients
from jaxmm.train.trainer import Trainer, resolve_hparams

from ._tiny import MODEL, OPT, tiny_splits


def test_masked_mean_excludes_padding():
    assert float(masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([1.0, 1.0, 0.0]))) == 2.0
    with pytest.raises(ValueError, match="per-example"):
        masked_mean(jnp.zeros((2, 2)), jnp.ones(2))


def test_per_term_gradients_equal_separate_gradients():
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    fn = lambda p: ({"a": jnp.sum(p["w"] ** 2), "b": jnp.sum(jnp.sin(p["w"]))}, None)
    means, stacked, _ = per_term_gradients(fn, params)
    np.testing.assert_allclose(stacked["w"][0], 2 * params["w"], rtol=1e-6)
    np.testing.assert_allclose(stacked["w"][1], jnp.cos(params["w"]), rtol=1e-6)
    assert float(means["a"]) == pytest.approx(5.25)


def _setup(per_term):
    method = get_method("synib", mask="random")
    splits = tiny_splits()
    data = stack_runs([splits.train])
    hp = resolve_hparams(method, OPT, [{}])
    trainer = Trainer(method, {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT, per_term_grads=per_term)
    first = next(batches(data, np.arange(40)[None], 16))
    return trainer, trainer.init([0], hp, jax.tree.map(lambda x: x[0], first)), data, hp


def test_per_term_path_gives_the_same_update_and_no_retracing():
    results = []
    for per_term in (False, True):
        trainer, state, data, hp = _setup(per_term)
        for batch in batches(data, np.arange(40)[None], 16):  # 16, 16 and a padded 8
            state, metrics = trainer.step(state, batch, hp)
        assert trainer.traces == 1
        results.append(state.params)
        if per_term:
            assert {"grad_norm/ce", "grad_norm/uni_ce", "grad_norm/synib_kl"} <= set(metrics)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), *results)


def test_vmapped_runs_differ_by_seed_and_hparam():
    method = get_method("vanilla")
    hp = resolve_hparams(method, OPT, [{}, {"lr": 0.0}])
    trainer = Trainer(method, {"a": 4, "b": 4}, Task("classification", "auto", 3), MODEL, OPT)
    data = stack_runs([tiny_splits().train] * 2)
    first = next(batches(data, np.stack([np.arange(40)] * 2), 16))
    state = trainer.init([0, 1], hp, jax.tree.map(lambda x: x[0], first))
    start = jax.tree.map(np.asarray, state.params)
    state, _ = trainer.step(state, first, hp)
    k0 = start["encoders"]["a"]["layers"][0]["kernel"]
    k1 = np.asarray(state.params["encoders"]["a"]["layers"][0]["kernel"])
    assert not np.allclose(k0[0], k0[1])  # different seeds, different init
    assert not np.allclose(k1[0], k0[0])  # run 0 trained
    np.testing.assert_array_equal(k1[1], k0[1])  # lr = 0: run 1 did not move
