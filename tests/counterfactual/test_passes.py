import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.counterfactual.passes import counterfactual_outputs, stack_counterfactuals


def test_stack_corrupts_one_modality_per_entry():
    clean = {"a": jnp.zeros((3, 2)), "b": jnp.ones((3, 5)), "c": jnp.full((3,), 7.0)}
    corrupted = {"a": jnp.full((3, 2), -1.0), "b": jnp.full((3, 5), -2.0)}
    stacked = stack_counterfactuals(clean, corrupted)
    assert stacked["a"].shape == (2, 3, 2) and stacked["c"].shape == (2, 3)
    np.testing.assert_array_equal(stacked["a"][0], -1.0)
    np.testing.assert_array_equal(stacked["a"][1], 0.0)
    np.testing.assert_array_equal(stacked["b"][0], 1.0)
    np.testing.assert_array_equal(stacked["b"][1], -2.0)
    np.testing.assert_array_equal(stacked["c"], 7.0)


def test_vmapped_passes_equal_a_python_loop():
    rng = np.random.default_rng(0)
    clean = {m: jnp.asarray(rng.normal(size=(4, 3))) for m in "xy"}
    corrupted = {m: jnp.asarray(rng.normal(size=(4, 3))) for m in "xy"}
    forward = lambda v: jnp.tanh(v["x"] @ jnp.ones(3)) * v["y"].sum(-1)
    out = counterfactual_outputs(forward, clean, corrupted)
    for i, m in enumerate("xy"):
        np.testing.assert_allclose(out[i], forward({**clean, m: corrupted[m]}), rtol=1e-6)


def test_unknown_modality():
    with pytest.raises(ValueError, match="not among the inputs"):
        stack_counterfactuals({"a": jnp.zeros(2)}, {"z": jnp.zeros(2)})
