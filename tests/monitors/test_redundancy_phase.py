"""RedReg's redundant-phase monitor: growth rate, EMA normalisation, resets, observations.

One 4-device subprocess checks that inside a per-device step (``jax.shard_map``, 2 rows per device)
the noisy views and both observations are those of the whole batch.
"""
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.monitors.redundancy_phase import (co_information_similarity, init_redundancy_phase,
                                             noisy_views, redundancy_score, update_redundancy_phase)

from _devices import run_on_devices


def _official(confidences, reds, window=10, gamma=0.5, momentum=0.9):
    """Step-by-step reference in plain Python, one modality, one epoch."""
    hist, ema, out = [], 0.0, []
    for p, red in zip(confidences, reds):
        hist.append(p)
        if len(hist) <= window:
            s = 1.0
        else:
            s1, s2 = sum(hist[-window:]) / window, sum(hist[-window - 1:-1]) / window
            s = (s1 - s2) / (abs(s2) + 1e-12)
        ema = momentum * ema + (1 - momentum) * red
        out.append((s, red / (ema + 1e-12) - gamma * max(s, 0.0)))
    return out


def test_monitor_matches_reference_and_resets_each_epoch():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 0.9, size=(2, 14)).astype(np.float32)
    reds = rng.uniform(0.5, 2.0, size=(2, 14)).astype(np.float32)
    chex.clear_trace_counter()
    update = jax.jit(chex.assert_max_traces(update_redundancy_phase, n=1))
    state = init_redundancy_phase(2, window=10)
    expected = [_official(list(conf[m]), list(reds[m])) for m in range(2)]
    for t in range(14):
        state = update(state, confidence=conf[:, t], redundancy=reds[:, t], epoch=0)
        for m in range(2):
            np.testing.assert_allclose(state.growth[m], expected[m][t][0], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(state.indicator[m], expected[m][t][1], rtol=1e-4)
    # First step of a new epoch: history and EMA reset, so r = red/(0.1 red) - gamma.
    state = update(state, confidence=conf[:, 0], redundancy=reds[:, 0], epoch=1)
    np.testing.assert_allclose(state.indicator, 10.0 - 0.5, rtol=1e-5)
    assert int(state.length) == 1


def test_redundancy_score_and_views():
    x1, x2 = jnp.zeros((2, 3)), jnp.ones((2, 3))
    f1, f2 = jnp.zeros((2, 4)), jnp.full((2, 4), 3.0)
    np.testing.assert_allclose(redundancy_score(f1, f2, x1, x2), 9.0, rtol=1e-6)
    v1, v2 = noisy_views(jax.random.PRNGKey(0), jnp.full((32, 32), 0.5), sigma=0.03)
    np.testing.assert_allclose(np.std(np.asarray(v1) - np.asarray(v2)), 0.03 * np.sqrt(2), rtol=0.1)
    c1, _ = noisy_views(jax.random.PRNGKey(1), jnp.zeros((32, 32)), sigma=1.0, clip=(0.0, 1.0))
    assert float(c1.min()) >= 0.0 and float(c1.max()) <= 1.0


def test_co_information_similarity():
    a = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    v = jnp.array([[1.0, 1.0], [0.0, -1.0]])
    np.testing.assert_allclose(co_information_similarity([a, v]), (np.sqrt(0.5) - 1.0) / 2, rtol=1e-6)
    t = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    expected = np.mean([(np.sqrt(0.5) - 1.0) / 2, 1.0, (np.sqrt(0.5) - 1.0) / 2])
    np.testing.assert_allclose(co_information_similarity([a, v, t]), expected, rtol=1e-6)


def test_padded_examples_are_left_out():
    valid = jnp.array([1.0, 1.0, 0.0])
    f1, f2 = jnp.zeros((3, 2)), jnp.array([[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]])
    x1, x2 = jnp.zeros((3, 1)), jnp.ones((3, 1))
    np.testing.assert_allclose(redundancy_score(f1, f2, x1, x2, valid), 5.0, rtol=1e-6)  # (1 + 9) / 2
    a = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    v = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(co_information_similarity([a, v], valid), 0.5, rtol=1e-6)
    np.testing.assert_allclose(co_information_similarity([a, v]), 0.0, atol=1e-7)


def test_similarity_needs_one_width():
    with pytest.raises(ValueError, match="differ in width \\[2, 3\\]"):
        co_information_similarity([jnp.ones((4, 2)), jnp.ones((4, 3))])


PER_DEVICE = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.monitors.redundancy_phase import co_information_similarity, noisy_views, redundancy_score
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    rows = (rng.random(size=(8, 2, 3)).astype(np.float32), rng.normal(size=(8, 5)).astype(np.float32),
            rng.normal(size=(8, 5)).astype(np.float32), np.array([1, 1, 0, 1, 1, 1, 0, 0], np.float32))

    def observe(x, f1, f2, valid):
        v1, v2 = noisy_views(jax.random.key(2), x, 0.3, clip=(0.0, 1.0))
        return v1, v2, redundancy_score(f1, f2, v1, v2, valid), co_information_similarity([f1, f2], valid)

    def local(*args):
        with br.per_device("data"):
            return observe(*args)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * 4,
                            out_specs=(P("data"), P("data"), P(), P()))
    put = [jax.device_put(r, NamedSharding(mesh, P("data"))) for r in rows]
    got, want = jax.jit(sharded)(*put), jax.jit(observe)(*rows)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, want)
    print("REDUNDANCY_PER_DEVICE_OK")
""")


def test_observations_per_device_are_those_of_the_whole_batch():
    assert "REDUNDANCY_PER_DEVICE_OK" in run_on_devices(PER_DEVICE, 4)
