"""Cumulative mean (AGM's all-time score means)."""
import numpy as np

from jaxmm.monitors.cumulative_mean import init_cumulative_mean, update_cumulative_mean


def test_cumulative_mean_of_a_sequence():
    state = init_cumulative_mean({"audio": 0.0, "visual": 0.0})
    np.testing.assert_array_equal(state.mean["audio"], 0.0)
    values = [(1.0, 4.0), (2.0, 0.0), (6.0, 2.0)]
    for a, v in values:
        state = update_cumulative_mean(state, {"audio": a, "visual": v})
    np.testing.assert_allclose(state.mean["audio"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(state.mean["visual"], 2.0, rtol=1e-6)
    assert int(state.count) == 3
