"""Counterfactual pieces inside a per-device step equal the same computation over the whole batch.

One 4-device subprocess (2 rows each) runs the fills, the random mask, the learned mask (its global
objective mean, gradient clipping and early stop) and the EMA feature statistics of the fills under
``jax.shard_map`` and compares them with the one-device computation on the 8-row batch.
"""
import textwrap

from _devices import run_on_devices

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.counterfactual import learned
    from jaxmm.counterfactual.fills import fill_values
    from jaxmm.counterfactual.masks import random_mask
    from jaxmm.monitors.feature_stats import FeatureStats, update_feature_stats
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    frames = rng.integers(0, 256, (8, 5)).astype(np.uint8)
    y = rng.integers(0, 3, 8)
    valid = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)
    head = rng.normal(size=(5, 3)).astype(np.float32)
    stats = FeatureStats(rng.normal(size=5).astype(np.float32), 2.0 + rng.random(5).astype(np.float32))
    key = jax.random.key(7)

    def per_device(fn, *rows, out=P("data")):
        def local(*a):
            with br.per_device("data"):
                assert br.device_count() == 4
                return fn(*a)
        put = [jax.device_put(r, NamedSharding(mesh, P("data"))) for r in rows]
        return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * len(rows), out_specs=out))(*put)

    def same(fn, *rows, out=P("data"), exact=True):
        got, want = per_device(fn, *rows, out=out), jax.jit(fn)(*rows)
        check = np.testing.assert_array_equal if exact else (
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7))
        jax.tree.map(check, got, want)
        return want

    for kind in ("noise", "ema", "shuffle"):
        same(lambda v: fill_values(kind, key, v, stats), x, exact=kind != "ema")
    assert same(lambda v: fill_values("noise", key, v), frames).dtype == np.uint8
    same(lambda v: fill_values("ema", key, v, stats), frames)
    shuffled = same(lambda v: fill_values("shuffle", key, v), x)
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, x)) and not np.array_equal(shuffled, x)
    same(lambda v: random_mask(key, v.shape, 0.4), x)

    # EMA statistics: means over the global batch's valid rows
    new = same(lambda v, w: update_feature_stats(stats, v, 0.9, w), x, valid, out=P(), exact=False)
    np.testing.assert_allclose(new.mean, 0.9 * stats.mean + 0.1 * x[valid > 0].mean(0), rtol=1e-5)
    same(lambda v: update_feature_stats(stats, v, 0.9), x, out=P(), exact=False)

    # learned mask: the objective's means, the clipped norm and the early stop span the global batch
    np.testing.assert_allclose(per_device(learned._mean_all, x, out=P()), x.mean(), rtol=1e-6)
    clip = learned._clip_by_global_norm(0.5)
    clipped = per_device(lambda g: clip.update(g, clip.init(g))[0], x)
    np.testing.assert_allclose(clipped, x * 0.5 / np.linalg.norm(x), rtol=1e-5)
    loss = lambda labels: lambda xc: -jax.nn.log_softmax(xc @ head)[jnp.arange(xc.shape[0]), labels]
    cfg = learned.LearnedMaskConfig(steps=12, lr=0.3, init_logit=-0.5, clip=0.05, tol=2e-3, patience=2)
    gate = same(lambda v, labels: learned.learn_unimodal_mask(loss(labels), v, jnp.zeros_like(v), cfg), x, y)
    assert 0 < gate.mean() < 1, gate
    print("PER_DEVICE_OK")
""")


def test_counterfactual_pieces_per_device_equal_the_whole_batch():
    assert "PER_DEVICE_OK" in run_on_devices(SCRIPT, 4)
