import jax.numpy as jnp
import numpy as np

from jaxmm.monitors.feature_stats import init_feature_stats, update_feature_stats


def test_ema_update_closed_form():
    stats = init_feature_stats((2,))
    z = jnp.array([[1.0, 2.0], [3.0, 6.0]])
    new = update_feature_stats(stats, z, momentum=0.9)
    np.testing.assert_allclose(new.mean, 0.1 * np.array([2.0, 4.0]), rtol=1e-6)
    np.testing.assert_allclose(new.second_moment, 0.9 + 0.1 * np.array([5.0, 20.0]), rtol=1e-6)


def test_padding_rows_are_ignored():
    stats = init_feature_stats((1,))
    z = jnp.array([[2.0], [100.0]])
    new = update_feature_stats(stats, z, momentum=0.0, valid=jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(new.mean, [2.0])
    np.testing.assert_allclose(new.second_moment, [4.0])
