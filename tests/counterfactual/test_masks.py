import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.counterfactual.fills import fill_values
from jaxmm.counterfactual.masks import corrupt, random_mask
from jaxmm.monitors.feature_stats import FeatureStats


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.9])
def test_random_mask_has_its_rate(rate):
    mask = random_mask(jax.random.key(0), (2000, 64), rate)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert abs(float(mask.mean()) - rate) < 0.01


def test_corrupt_is_the_gate():
    x, fill = jnp.arange(4.0), jnp.full(4, -1.0)
    np.testing.assert_allclose(corrupt(x, jnp.array([1, 0, 1, 0]), fill), [-1, 1, -1, 3])
    np.testing.assert_allclose(corrupt(x, jnp.full(4, 0.25), fill), 0.75 * x - 0.25)


def test_fills():
    x = jnp.arange(200.0).reshape(100, 2)
    noise = fill_values("noise", jax.random.key(1), jnp.zeros((20000, 2)))
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 1) < 0.03
    stats = FeatureStats(mean=jnp.array([3.0, -1.0]), second_moment=jnp.array([9.0 + 4.0, 1.0 + 0.25]))
    ema = fill_values("ema", jax.random.key(2), jnp.zeros((20000, 2)), stats)
    np.testing.assert_allclose(ema.mean(0), [3.0, -1.0], atol=0.05)
    np.testing.assert_allclose(ema.std(0), [2.0, 0.5], atol=0.05)
    shuffled = fill_values("shuffle", jax.random.key(3), x)
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), x[:, 0])
    assert not np.array_equal(shuffled, x)


def test_fill_bad_input():
    with pytest.raises(ValueError, match="`kind` must be one of 'noise', 'ema', 'shuffle'; got 'zeros'"):
        fill_values("zeros", jax.random.key(0), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="needs running feature statistics"):
        fill_values("ema", jax.random.key(0), jnp.zeros((2, 2)))
