"""``jaxmm.batch_reduce``: plain reductions outside a per-device step, global ones inside ``shard_map``.

The in-process tests check the one-device forms against numpy; one 4-device subprocess checks every
helper inside ``jax.shard_map`` against the same numpy computation over the whole batch, gradients
included, and the trainer's per-device pieces (model random streams folded per device, the refusal of
state that differs per device) in the same start-up.
"""
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm import batch_reduce as br

from _devices import run_on_devices

X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
VALID = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)


def test_outside_a_per_device_step_the_helpers_are_plain_reductions():
    assert br.axis_name() is None and br.device_count() == 1
    np.testing.assert_allclose(br.batch_sum(X), X.sum(0), rtol=1e-6)
    np.testing.assert_allclose(br.batch_mean(X), X.mean(0), rtol=1e-6)
    np.testing.assert_allclose(br.batch_mean(X, VALID), (X * VALID[:, None]).sum(0) / VALID.sum(), rtol=1e-6)
    np.testing.assert_allclose(br.batch_mean(X[:, 0], VALID > 0), X[VALID > 0, 0].mean(), rtol=1e-6)
    assert br.batch_mean(X, np.zeros(8)).tolist() == [0.0, 0.0, 0.0]  # all padding: 0, not NaN
    assert br.gather_rows(X) is X and br.local_rows(X) is X and not br.is_per_device(jnp.asarray(X))
    key = jax.random.key(3)
    np.testing.assert_array_equal(br.draw_rows(lambda k, s: jax.random.normal(k, s), key, (8, 3)),
                                  jax.random.normal(key, (8, 3)))


def test_the_axis_is_set_only_inside_per_device():
    with br.per_device("data"):
        assert br.axis_name() == "data"
    assert br.axis_name() is None


SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.train.step import per_device_model_keys
    from jaxmm.train.trainer import per_device_step
    from jaxmm.train.state import TrainState
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    valid = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)
    w = np.float32(0.7)
    key = jax.random.key(5)

    def per_device(fn, *args):
        def local(*a):
            with br.per_device("data"):
                return fn(*a)
        specs = tuple(P("data") if np.ndim(a) else P() for a in args)
        put = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(args, specs)]
        return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P()))(*put)

    def loss(w, x, valid):  # a nonlinear function of global batch statistics, as a method's loss may be
        mean = br.batch_mean(x * w, valid)
        centred = br.gather_rows(x * w) - mean
        noise = br.draw_rows(lambda k, s: jax.random.normal(k, s), key, x.shape)
        return jnp.sum(br.batch_sum(jnp.tanh(x * w * mean + noise) * valid[:, None])) + jnp.sum(centred ** 2)

    def reference(w, x, valid):
        mean = jnp.sum(x * w * valid[:, None], 0) / jnp.sum(valid)
        noise = jax.random.normal(key, x.shape)
        return jnp.sum(jnp.tanh(x * w * mean + noise) * valid[:, None]) + jnp.sum((x * w - mean) ** 2)

    def value_and_grad(w, x, valid):
        assert br.device_count() == 4
        value, grad = jax.value_and_grad(loss)(w, x, valid)
        back = br.local_rows(br.gather_rows(x))
        return value, grad, br.batch_sum(jnp.sum(jnp.abs(back - x), 1)), br.batch_sum(jnp.ones(x.shape[0]))

    value, grad, roundtrip, count = per_device(value_and_grad, w, x, valid)
    ref_value, ref_grad = jax.value_and_grad(reference)(w, x, valid)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4)
    assert float(roundtrip) == 0.0 and float(count) == 8.0

    # the model's own streams: a different dropout key per device, the same outside
    rest = {"key": jax.random.key(1), "count": jnp.zeros((), jnp.uint32)}
    assert per_device_model_keys(rest) is rest
    def streams(rows):
        folded = per_device_model_keys(rest)
        return br.gather_rows(jax.random.uniform(folded["key"], (1,)) + 0 * rows[:1])
    draws = np.asarray(per_device(streams, np.zeros(4, np.float32)))
    assert len(set(draws.round(6).tolist())) == 4, draws

    # per_device_step refuses method state that differs per device, naming it
    def leaky(state, batch, hparams):
        return state._replace(method_state=jnp.sum(batch)), {}
    state = TrainState(jnp.zeros(()), {}, (), (), jnp.zeros(()), jnp.zeros((), jnp.uint32), jnp.zeros(()), jnp.zeros(()))
    try:
        jax.jit(per_device_step(leaky, mesh, "leaky"))(state, jnp.ones((1, 8)), {})
        raise SystemExit("per_device_step accepted per-device method state")
    except ValueError as e:
        assert "leaky" in str(e) and "method_state" in str(e), e
    print("BATCH_REDUCE_OK")
""")


def test_helpers_inside_shard_map_equal_the_whole_batch_computation():
    assert "BATCH_REDUCE_OK" in run_on_devices(SCRIPT, 4)
