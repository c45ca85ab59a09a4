"""The transforms give the same updates with their Pallas kernels forced on (interpret mode) as without."""
import jax
import numpy as np

from jaxmm.transforms.mmpareto import mmpareto
from jaxmm.transforms.redreg import redreg

SHAPES = {"a_kernel": (3, 4), "a_bias": (4,), "v_kernel": (2, 2, 3, 5), "v_one": (1,), "head": (5, 2)}
LABELS = {"a_kernel": "audio", "a_bias": "audio", "v_kernel": "visual", "v_one": "visual", "head": "head"}


def tree(seed, lead=()):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(SHAPES))
    return {n: jax.random.normal(k, lead + s) for k, (n, s) in zip(keys, SHAPES.items())}


def test_redreg_with_its_kernel_forced_equals_the_default(monkeypatch):
    tx = redreg(("audio", "visual"), labels=LABELS, num_epochs=10)
    params0, params1, grads = tree(0), tree(1), tree(2)
    extra = dict(confidence={"audio": 0.9, "visual": 0.4}, redundancy={"audio": 1.0, "visual": 0.0},
                 similarity=1.0, epoch=0)
    _, state = tx.update(grads, tx.init(params0), params0, **extra)  # snapshot = params0
    monkeypatch.setenv("JAXMM_KERNELS", "none")
    want, want_state = tx.update(grads, state, params1, **extra)
    assert float(want_state.beta[0]) > 0
    monkeypatch.setenv("JAXMM_KERNELS", "orthogonal_update")  # interpret mode on the CPU
    got, got_state = tx.update(grads, state, params1, **extra)
    np.testing.assert_array_equal(got_state.beta, want_state.beta)
    np.testing.assert_array_equal(got["head"], grads["head"])  # unlabelled leaves pass through
    for n in SHAPES:
        np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=1e-5)
    assert not np.allclose(want["a_kernel"], grads["a_kernel"])  # the projection did act


def test_mmpareto_with_its_kernel_forced_equals_the_default(monkeypatch):
    tx = mmpareto({"audio": (0, 1)}, labels=LABELS, gamma=1.5)
    terms = tree(3, lead=(3,))
    terms = {n: t.at[1].set(t[1] - 2.0 * t[0]) for n, t in terms.items()}  # conflicting terms 0 and 1
    updates = {n: t.sum(0) for n, t in terms.items()}
    monkeypatch.setenv("JAXMM_KERNELS", "none")
    want, want_state = tx.update(updates, tx.init(updates), term_grads=terms)
    monkeypatch.setenv("JAXMM_KERNELS", "pareto_update")
    got, got_state = tx.update(updates, tx.init(updates), term_grads=terms)
    np.testing.assert_allclose(got_state.weights["audio"], want_state.weights["audio"], rtol=1e-5, atol=1e-6)
    for n in SHAPES:
        np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=1e-5)
    assert not np.allclose(want["a_kernel"], updates["a_kernel"])  # the combination did act
