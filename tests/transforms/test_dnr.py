"""Diagnosing & Re-learning: reset strength and soft re-initialisation.

k-means and purity: tests/metrics/test_clustering.py.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.dnr import reinit, reinit_strength

from .contract import group_labels


@pytest.mark.parametrize("train, val, lam, expected", [
    (0.8, 0.6, 3.0, math.tanh(0.6)),
    (0.55, 0.70, 3.0, math.tanh(0.45)),
    (0.5, 0.5, 3.0, 0.0),
    (0.9, 0.4, 1.0, math.tanh(0.5)),
])
def test_reset_strength_from_purities(train, val, lam, expected):
    np.testing.assert_allclose(reinit_strength(train, val, lam), expected, rtol=1e-6, atol=1e-7)


def _params():
    return {"audio": {"w": jnp.full((2, 2), 1.0), "b": jnp.full((2,), 1.0, jnp.bfloat16)},
            "visual": {"w": jnp.full((2, 2), 3.0)}, "head": {"w": jnp.full((2, 2), 7.0)}}


def test_reinit_mixes_listed_groups_only_and_keeps_dtypes():
    params = _params()
    init = jax.tree.map(jnp.zeros_like, params)
    out = reinit(params, init, {"audio": 0.25, "visual": 0.5}, labels=group_labels)
    np.testing.assert_allclose(out["audio"]["w"], 0.75)
    np.testing.assert_allclose(np.asarray(out["audio"]["b"], np.float32), 0.75)
    assert out["audio"]["b"].dtype == jnp.bfloat16
    np.testing.assert_allclose(out["visual"]["w"], 1.5)
    np.testing.assert_array_equal(out["head"]["w"], params["head"]["w"])


def test_reinit_vmapped_over_runs_equals_each_run():
    params = _params()
    runs = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
    init = jax.tree.map(jnp.zeros_like, runs)
    alpha = {"audio": jnp.array([0.25, 0.5]), "visual": jnp.array([0.5, 0.0])}
    out = jax.vmap(lambda p, p0, a: reinit(p, p0, a, labels=group_labels))(runs, init, alpha)
    for r in range(2):
        one = reinit(jax.tree.map(lambda x: x[r], runs), jax.tree.map(lambda x: x[r], init),
                     {m: a[r] for m, a in alpha.items()}, labels=group_labels)
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a[r], np.float32),
                                                                np.asarray(b, np.float32)), out, one)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`lam` must be non-negative"):
        reinit_strength(0.5, 0.4, -1.0)
    params = _params()
    with pytest.raises(ValueError, match=r"^dnr: no parameter is labelled 'video' \(named in `strength`\); "
                                         r"the labels present are \['audio', 'head', 'visual'\]"):
        reinit(params, params, {"audio": 0.5, "video": 0.5}, labels=group_labels)
