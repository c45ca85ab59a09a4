"""InfoReg's acquisition rate k_e against the official padded-list formula."""
import chex
import jax
import numpy as np

from jaxmm.monitors.information_acquisition import (accumulate, fisher_term,
                                                     init_information_acquisition, observe_epoch)


def _official_rate(traces, e, window=10):
    if e == 0:
        return 1.0
    t = [0.0] * window + traces[:e]
    tr1, tr2 = sum(t[-window:]) / window, sum(t[-window - 1:-1]) / window
    return (tr1 - tr2) / tr1


def test_rate_matches_official_formula_over_epochs():
    traces = [4.0, 6.0, 5.0, 2.0, 1.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.7, 0.6]
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, fisher, epoch):
        return accumulate(observe_epoch(state, epoch), fisher)

    state = init_information_acquisition(2)
    for e, total in enumerate(traces):
        for _ in range(2):  # two steps per epoch, each half the epoch's trace
            state = step(state, np.array([total / 2, 1.0], np.float32), e)
        np.testing.assert_allclose(state.rate[0], _official_rate(traces, e), rtol=1e-5)
        # The constant second modality: T = 2 every epoch.
        np.testing.assert_allclose(state.rate[1], _official_rate([2.0] * len(traces), e), rtol=1e-5)
    assert int(state.completed) == len(traces) - 1


def test_fisher_term():
    grads = [np.ones((2, 2)), np.full((3,), 2.0)]
    np.testing.assert_allclose(fisher_term(grads), 1.0 + 4.0)
