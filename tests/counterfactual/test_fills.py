"""Fills for integer inputs (uint8 frames) stay in the input's dtype and range."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxmm.counterfactual.fills import fill_values
from jaxmm.monitors.feature_stats import FeatureStats


def test_noise_on_uint8_frames_is_uniform_over_the_byte_range():
    x = jnp.zeros((64, 8, 8, 3), jnp.uint8)
    noise = np.asarray(fill_values("noise", jax.random.key(0), x))
    assert noise.dtype == np.uint8 and noise.min() == 0 and noise.max() == 255
    assert abs(noise.mean() - 127.5) < 2.0  # uniform over 0..255: mean 127.5, sd of the mean ~0.6


def test_ema_on_uint8_frames_is_rounded_and_clipped():
    x = jnp.zeros((4000, 2), jnp.uint8)
    stats = FeatureStats(mean=jnp.asarray([250.0, 10.0]), second_moment=jnp.asarray([250.0**2 + 100.0, 100.0]))
    draw = np.asarray(fill_values("ema", jax.random.key(1), x, stats))
    assert draw.dtype == np.uint8 and draw.max() == 255  # N(250, 10²) clipped at the top of the range
    np.testing.assert_array_equal(draw[:, 1], 10)  # zero variance: exactly the mean
