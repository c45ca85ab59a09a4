"""Batch reductions of the transforms inside a per-device step equal the whole-batch computation.

One 4-device subprocess (2 rows each) runs AGM's scores (masked mean over the valid rows) and MLA's
projector update (mean feature of per-example rows, or a global mean handed over as one row) under
``jax.shard_map`` and compares them with the one-device computation on the 8-row batch.
"""
import textwrap

from _devices import run_on_devices

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.transforms.agm import agm_scores
    from jaxmm.transforms.mla import update_projector
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    logits = {m: rng.normal(size=(8, 3)).astype(np.float32) for m in ("a", "b")}
    y = rng.integers(0, 3, 8)
    valid = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)
    feats = rng.normal(size=(8, 4)).astype(np.float32)
    eye = jnp.eye(4)

    def per_device(fn, *rows):
        def local(*a):
            with br.per_device("data"):
                return fn(*a)
        put = [jax.device_put(r, NamedSharding(mesh, P("data"))) for r in rows]
        return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * len(rows), out_specs=P()))(*put)

    def same(fn, *rows):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), per_device(fn, *rows), fn(*rows))

    same(lambda la, lb, labels, w: agm_scores({"a": la, "b": lb}, labels, w), logits["a"], logits["b"], y, valid)
    same(lambda la, lb, labels: agm_scores({"a": la, "b": lb}, labels), logits["a"], logits["b"], y)
    nll = -jax.nn.log_softmax(logits["a"])[np.arange(8), y]
    np.testing.assert_allclose(agm_scores(logits, y, valid)["a"], nll[valid > 0].mean(), rtol=1e-6)
    same(lambda f: update_projector(eye, f, 0.3), feats)
    # a masked mean already taken over the global batch (the same on every device) is used as given
    np.testing.assert_allclose(per_device(lambda f, w: update_projector(eye, br.batch_mean(f, w)[None], 0.3),
                                          feats, valid),
                               update_projector(eye, feats[valid > 0], 0.3), rtol=1e-6)
    print("PER_DEVICE_OK")
""")


def test_transform_reductions_per_device_equal_the_whole_batch():
    assert "PER_DEVICE_OK" in run_on_devices(SCRIPT, 4)
