"""Per-modality scores: true-class probability, its batch sum (OGM-GE) and mean (RedReg).

One 4-device subprocess checks that inside a per-device step (``jax.shard_map``, 2 rows per
device) both scores are those of the whole batch.
"""
import textwrap

import jax.numpy as jnp
import numpy as np

from jaxmm.losses.ce import true_class_probability
from jaxmm.monitors.scores import confidence, discrepancy_score

from _devices import run_on_devices


def test_scores_by_hand():
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, np.log(4.0)]])
    labels = jnp.array([1, 0, 0])
    p = [0.5, 0.75, 0.2]
    np.testing.assert_allclose(true_class_probability(logits, labels), p, rtol=1e-6)
    np.testing.assert_allclose(discrepancy_score(logits, labels), sum(p), rtol=1e-6)
    np.testing.assert_allclose(confidence(logits, labels), np.mean(p), rtol=1e-6)
    # Padded examples (valid = 0) are left out of the sum.
    np.testing.assert_allclose(discrepancy_score(logits, labels, jnp.array([1.0, 0.0, 1.0])), 0.7, rtol=1e-6)


def test_confidence_leaves_out_padding():
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, 9.0]])
    labels = jnp.array([1, 0, 0])
    np.testing.assert_allclose(confidence(logits, labels, jnp.array([1.0, 1.0, 0.0])), 0.625, rtol=1e-6)


SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.monitors.scores import confidence, discrepancy_score
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 3, 8),
            np.array([1, 1, 0, 1, 1, 1, 0, 0], np.float32))

    def local(*a):
        with br.per_device("data"):
            return {f.__name__: (f(*a), f(*a[:2])) for f in (discrepancy_score, confidence)}
    put = [jax.device_put(r, NamedSharding(mesh, P("data"))) for r in rows]
    got = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * 3, out_specs=P()))(*put)
    logits, labels, valid = rows
    p = np.exp(logits)[np.arange(8), labels] / np.exp(logits).sum(1)
    want = {"discrepancy_score": ((p * valid).sum(), p.sum()), "confidence": (p[valid > 0].mean(), p.mean())}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    print("SCORES_PER_DEVICE_OK")
""")


def test_scores_per_device_are_those_of_the_whole_batch():
    assert "SCORES_PER_DEVICE_OK" in run_on_devices(SCRIPT, 4)
