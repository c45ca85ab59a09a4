"""Pallas kernels (interpret mode on the CPU) against their jnp references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm import kernels
from jaxmm.kernels import _layout
from jaxmm.transforms.mmpareto import pareto_weights

# mixed ranks; sizes of 1, below, at and not divisible by a block (block_rows=2: 256 elements)
SHAPES = [(3, 3, 2, 5), (7,), (1,), (130, 3), (256,), (2, 129)]
TOL = dict(rtol=2e-5, atol=1e-5)  # the combination cancels: absolute error ~ eps x term size


def random_leaves(key, shapes, dtypes, lead=()):
    keys = jax.random.split(key, len(shapes))
    return [jax.random.normal(k, lead + s).astype(d) for k, s, d in zip(keys, shapes, dtypes)]


def assert_leaves_close(got, want, tol=TOL):
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), **tol)


@jax.jit
def orthogonal_pair(g, p, s, beta):
    return (kernels.orthogonal_update(g, p, s, beta, block_rows=2, interpret=True),
            kernels.orthogonal_update_reference(g, p, s, beta))


@pytest.mark.parametrize("bf16", [False, True])
def test_orthogonal_update_matches_reference_on_mixed_tensors(bf16):
    dtypes = [jnp.bfloat16 if bf16 and i % 2 else jnp.float32 for i in range(len(SHAPES))]
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    g, p, s = (random_leaves(k, SHAPES, dtypes) for k in (k1, k2, k3))
    beta = jnp.linspace(0.0, 2.0, len(SHAPES))
    got, want = orthogonal_pair(g, p, s, beta)
    assert_leaves_close(got, want, dict(rtol=1e-2, atol=1e-2) if bf16 else TOL)


def test_orthogonal_update_edge_cases():
    shapes = [(4, 3), (1,), (300,), (0, 5)]
    g = [jnp.zeros((4, 3)), jnp.full((1,), 2.0), jax.random.normal(jax.random.PRNGKey(1), (300,)), jnp.zeros((0, 5))]
    p = [jnp.ones((4, 3)), jnp.full((1,), 5.0), 2 * g[2], g[3]]  # zero gradient; size 1; d parallel to g; empty
    s = [jnp.zeros(sh) for sh in shapes]
    got, want = orthogonal_pair(g, p, s, jnp.ones(4))
    assert_leaves_close(got, want)
    np.testing.assert_allclose(got[0], jnp.ones((4, 3)))  # g ≡ 0: d⊥ = d
    np.testing.assert_allclose(got[1], g[1], atol=1e-6)  # 1-D: d ∥ g, nothing left
    np.testing.assert_allclose(got[2], g[2], atol=1e-5)


def test_orthogonal_update_is_orthogonal_to_the_gradient():
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    g, p = random_leaves(k1, SHAPES, [jnp.float32] * 6), random_leaves(k2, SHAPES, [jnp.float32] * 6)
    got, _ = orthogonal_pair(g, p, [jnp.zeros_like(x) for x in p], jnp.ones(6))
    for new, old in zip(got, g):
        assert abs(float(jnp.vdot(new - old, old))) < 1e-4 * float(jnp.vdot(old, old)) + 1e-6


def pareto_pair(terms, sums, scale=1.5):
    run = jax.jit(lambda t, s: (kernels.pareto_update(t, s, pareto_weights, scale, block_rows=2, interpret=True),
                                kernels.pareto_update_reference(t, s, pareto_weights, scale)))
    return run(terms, sums)


@pytest.mark.parametrize("num_terms", [2, 3])
@pytest.mark.parametrize("conflict", [False, True])
def test_pareto_update_matches_reference(num_terms, conflict):
    terms = random_leaves(jax.random.PRNGKey(num_terms), SHAPES, [jnp.float32] * 6, lead=(num_terms,))
    if conflict:  # the second term leans against the first on every tensor: min-norm weights
        terms = [t.at[1].set(t[1] - 2.0 * t[0]) for t in terms]
    sums = [t.sum(0) for t in terms]
    (got, w_got), (want, w_want) = pareto_pair(terms, sums)
    np.testing.assert_allclose(w_got, w_want, rtol=1e-5, atol=1e-6)
    assert_leaves_close(got, want)


def test_pareto_update_bf16_sums_and_a_zero_term():
    terms = random_leaves(jax.random.PRNGKey(7), SHAPES, [jnp.float32] * 6, lead=(2,))
    terms = [t.at[0].set(0.0) for t in terms]  # a zero term gradient: the official solver's guard
    sums = [t.sum(0).astype(jnp.bfloat16) for t in terms]
    (got, w_got), (want, w_want) = pareto_pair(terms, sums)
    np.testing.assert_allclose(w_got, w_want)
    assert_leaves_close(got, want, dict(rtol=1e-2, atol=1e-2))


def test_layout_pads_each_tensor_to_whole_blocks():
    lay = _layout.layout([(3,), (256,), (257,), (0,)], block_rows=2)
    assert lay.offsets == (0, 256, 512, 1024) and list(lay.segments) == [0, 1, 2, 2]
    x = [jnp.arange(n, dtype=jnp.float32) for n in (3, 256, 257, 0)]
    packed = _layout.pack(x, lay)
    assert packed.shape == (8, 128) and float(packed[0, 3]) == 0.0
    for a, b in zip(_layout.unpack(packed, lay), x):
        np.testing.assert_array_equal(a, b)


def test_dispatch_defaults_are_off_and_the_environment_overrides(monkeypatch):
    monkeypatch.delenv("JAXMM_KERNELS", raising=False)
    for name in kernels.DEFAULTS:
        for backend in ("cpu", "gpu", "tpu"):
            assert not kernels.enabled(name, backend)
    monkeypatch.setenv("JAXMM_KERNELS", "pareto_update")
    assert kernels.enabled("pareto_update", "cpu") and not kernels.enabled("orthogonal_update", "gpu")
    monkeypatch.setenv("JAXMM_KERNELS", "all")
    assert kernels.enabled("orthogonal_update")
    monkeypatch.setenv("JAXMM_KERNELS", "nope")
    with pytest.raises(ValueError, match="unknown kernels"):
        kernels.enabled("pareto_update")
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.enabled("nope")


def test_kernels_vmap_over_runs_as_the_trainer_does():
    shapes, runs = [(3, 5), (7,), (300,)], 3
    g, p, s = (random_leaves(jax.random.PRNGKey(i), shapes, [jnp.float32] * 3, lead=(runs,)) for i in range(3))
    beta = jnp.linspace(0.5, 1.5, runs * 3).reshape(runs, 3)
    kernel = functools.partial(kernels.orthogonal_update, block_rows=1, interpret=True)
    assert_leaves_close(jax.jit(jax.vmap(kernel))(g, p, s, beta),
                        jax.vmap(kernels.orthogonal_update_reference)(g, p, s, beta))
    terms, gamma = random_leaves(jax.random.PRNGKey(5), shapes, [jnp.float32] * 3, lead=(runs, 2)), jnp.ones(runs)
    sums = [t.sum(1) for t in terms]
    kernel = jax.vmap(lambda t, x, c: kernels.pareto_update(t, x, pareto_weights, c, block_rows=1, interpret=True))
    reference = jax.vmap(lambda t, x, c: kernels.pareto_update_reference(t, x, pareto_weights, c))
    (got, w_got), (want, w_want) = jax.jit(kernel)(terms, sums, gamma), reference(terms, sums, gamma)
    np.testing.assert_allclose(w_got, w_want, rtol=1e-5)
    assert_leaves_close(got, want)
