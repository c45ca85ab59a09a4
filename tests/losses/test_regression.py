import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import l1_loss, mse_loss

RNG = np.random.default_rng(0)
NUMPY = {l1_loss: lambda p, t: np.abs(p - t), mse_loss: lambda p, t: (p - t) ** 2}


@pytest.mark.parametrize("fn", [l1_loss, mse_loss])
def test_per_example_values_match_numpy(fn):
    p, t = RNG.normal(size=(7, 3)), RNG.normal(size=(7, 3))
    expected = NUMPY[fn](p, t).mean(axis=1)
    np.testing.assert_allclose(fn(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32)), expected, rtol=1e-5)
    p1, t1 = RNG.normal(size=5), RNG.normal(size=5)
    out = fn(jnp.asarray(p1), jnp.asarray(t1))
    assert out.shape == (5,)
    np.testing.assert_allclose(out, NUMPY[fn](p1, t1), rtol=1e-5)


@pytest.mark.parametrize("fn", [l1_loss, mse_loss])
def test_column_and_flat_shapes_are_interchangeable(fn):
    p, t = jnp.asarray(RNG.normal(size=6), jnp.float32), jnp.asarray(RNG.normal(size=6), jnp.float32)
    flat = fn(p, t)
    for a, b in ((p[:, None], t), (p, t[:, None]), (p[:, None], t[:, None])):
        np.testing.assert_allclose(fn(a, b), flat, rtol=1e-6)
        assert fn(a, b).shape == (6,)


def test_known_values_and_mse_is_optax_squared_error_without_half():
    p, t = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 1.0, 0.5])
    np.testing.assert_allclose(l1_loss(p, t), [1.0, 3.0, 0.0])
    np.testing.assert_allclose(mse_loss(p, t), [1.0, 9.0, 0.0])
    import optax
    np.testing.assert_allclose(mse_loss(p, t), 2 * optax.losses.l2_loss(p, t))
    # the batch mean is PyTorch's reduction="mean" over all elements
    p2, t2 = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    assert float(mse_loss(jnp.asarray(p2), jnp.asarray(t2)).mean()) == pytest.approx(np.mean((p2 - t2) ** 2),
                                                                                       rel=1e-5)


@pytest.mark.parametrize("fn", [l1_loss, mse_loss])
def test_where_zeroes_excluded_examples(fn):
    p, t = jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3)
    np.testing.assert_allclose(fn(p, t, where=jnp.array([True, False, True])), NUMPY[fn](np.array([1.0, 0, 3]), 0))


@pytest.mark.parametrize("fn", [l1_loss, mse_loss])
def test_gradients_jit_and_dtypes(fn):
    p, t = jnp.array([0.5, -1.5], jnp.bfloat16), jnp.array([1.0, 1.0], jnp.float32)
    assert fn(p, t).dtype == jnp.bfloat16
    assert fn(jnp.array([1, 2]), jnp.array([0.0, 0.0])).dtype == jnp.float32  # integer preds are promoted
    grad = jax.grad(lambda x: fn(x, jnp.array([1.0, 1.0])).sum())(jnp.array([0.5, 3.0]))
    expected = np.sign([-0.5, 2.0]) if fn is l1_loss else 2 * np.array([-0.5, 2.0])
    np.testing.assert_allclose(grad, expected)
    traces = []

    @jax.jit
    def step(a, b):
        traces.append(1)
        return fn(a, b)

    for i in range(3):
        step(jnp.full((4, 2), float(i)), jnp.zeros((4, 2)))
    assert len(traces) == 1


@pytest.mark.parametrize("fn", [l1_loss, mse_loss])
@pytest.mark.parametrize("p_shape, t_shape", [((4, 2), (4,)), ((4,), (5,)), ((4, 2), (4, 3)), ((4, 2, 1), (4, 2)),
                                              ((), ())])
def test_mismatched_shapes_raise(fn, p_shape, t_shape):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: pred \(.*\) and target \(.*\) do not match"):
        fn(jnp.zeros(p_shape), jnp.zeros(t_shape))
