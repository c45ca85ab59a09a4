"""Prototypes, PMR's prototypical CE and IIBalance's budget-gap alignment.

Expected values are computed in numpy and each test compiles one program, to keep the suite fast.
One 4-device subprocess checks that inside a per-device step (``jax.shard_map``, 2 rows per
device) the class sums and PMR's scores are those of the whole batch.
"""
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import prototype as proto

from _devices import run_on_devices

FEATURES = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]], np.float32)
LABELS = np.array([0, 0, 1, 2])


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _ce(logits, labels):
    return -_log_softmax(logits)[np.arange(len(labels)), labels]


def test_class_statistics_and_ema():
    @jax.jit
    def run(z, y):
        sums, counts = proto.class_sums(z, y, 4, where=jnp.array([1, 1, 1, 0], bool))
        return (counts, proto.class_means(sums, counts, fallback=jnp.full((4, 2), 7.0)),
                proto.class_means(sums, counts),
                proto.ema_update(jnp.ones((3, 2)), jnp.zeros((3, 2)), 0.9,
                                 mask=jnp.array([True, False, True])),
                proto.ema_update(jnp.ones(2), jnp.zeros(2), 0.25))
    counts, means, zero_fill, ema, ema_vec = run(FEATURES, LABELS)
    np.testing.assert_allclose(counts, [2, 1, 0, 0])
    np.testing.assert_allclose(means, [[2, 0], [0, 2], [7, 7], [7, 7]])
    np.testing.assert_allclose(zero_fill[2:], 0.0)
    np.testing.assert_allclose(ema, [[0.9, 0.9], [1, 1], [0.9, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(ema_vec, [0.25, 0.25])


def test_prototype_logits_metrics_and_constant_prototypes():
    c = np.array([[0.0, 0.0], [0.0, 2.0]], np.float32)

    @jax.jit
    def run(z, c):
        return (proto.prototype_logits(z, c),
                proto.prototype_logits(z, c, metric="squared_euclidean"),
                proto.prototype_logits(z, 1.5 * c + jnp.array([[2.0, 0.0], [0.0, 0.0]]),
                                       metric="cosine", temperature=0.5),
                jax.grad(lambda p: proto.prototype_logits(z, p).sum())(c),
                jax.grad(lambda x: proto.prototype_logits(x, c).sum())(jnp.zeros((1, 2))))
    euclid, squared, cosine, grad_c, grad_z = run(FEATURES, c)
    distances = np.linalg.norm(FEATURES[:, None] - c[None], axis=-1)
    np.testing.assert_allclose(euclid, -distances, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(squared, -distances**2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cosine[0], [2.0, 0.0], atol=1e-6)   # cos / 0.5
    np.testing.assert_allclose(grad_c, 0.0)                         # prototypes are constants
    assert np.all(np.isfinite(grad_z))                              # z exactly on a prototype


def test_prototype_distances_are_stable_under_a_large_common_offset():
    """Features offset by 1000x their spread (PMR's un-normalised encoder outputs): float32 direct
    differences match float64 numpy; the old expansion |z|^2 - 2 z.c + |c|^2 was off by ~27%."""
    rng = np.random.default_rng(0)
    offset = 1000.0 * rng.standard_normal(32)
    z = (offset + rng.standard_normal((64, 32))).astype(np.float32)
    c = (offset + rng.standard_normal((6, 32))).astype(np.float32)
    z64, c64 = z.astype(np.float64), c.astype(np.float64)
    squared = ((z64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)

    @jax.jit
    def run(z, c):
        return (proto.prototype_logits(z, c), proto.prototype_logits(z, c, metric="squared_euclidean"),
                jax.grad(lambda z: proto.prototype_logits(z, c)[:, 0].sum())(z))

    euclidean, sq, grad = run(z, c)
    np.testing.assert_allclose(sq, -squared, rtol=1e-5)
    np.testing.assert_allclose(euclidean, -np.sqrt(squared), rtol=1e-5)
    # d(-|z - c_0|)/dz = -(z - c_0) / |z - c_0|
    expected_grad = -(z64 - c64[0]) / np.sqrt(squared[:, :1])
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scores, expected", [((2.0, 1.0), (0.0, 1.5)), ((1.0, 3.0), (1.5, 0.0)),
                                              ((1.0, 1.0), (0.0, 0.0))])
def test_pmr_code_rule(scores, expected):
    np.testing.assert_allclose(proto.pmr_coefficients(np.array(scores), alpha=1.5), expected)


def test_pmr_continuous_rule_and_many_modalities():
    coef = proto.pmr_coefficients(np.array([2.0, 1.0, 2.0 / 1.5]), alpha=2.0, rule="continuous")
    np.testing.assert_allclose(coef, [0.0, 2 * np.tanh(1.0), 2 * np.tanh(0.5)], rtol=1e-6)
    balanced = proto.pmr_coefficients(np.array([1.0, 1.0]), alpha=2.0, rule="continuous")
    np.testing.assert_allclose(balanced, [0.0, 0.0])
    np.testing.assert_allclose(proto.pmr_coefficients(np.array([3.0, 1.0, 2.0]), alpha=1.0),
                               [0.0, 1.0, 1.0])


def test_pmr_loss_scales_the_weak_modality_and_regularises_the_dominant():
    labels = np.array([0, 1])
    strong_c = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    weak_c = np.array([[0.0, 0.0], [0.5, 0.0]], np.float32)
    z_strong = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)   # on its prototypes
    z_weak = np.array([[0.2, 0.0], [0.3, 0.0]], np.float32)      # ambiguous

    @jax.jit
    def run(zs, cs, y):
        plain = proto.pmr_loss(zs, cs, y, alpha=2.0)
        entropy = proto.pmr_loss(zs, cs, y, alpha=2.0, entropy_weight=0.5)[0]
        masked = proto.pmr_loss(zs, cs, y, alpha=2.0, where=jnp.array([True, False]))[0]
        return plain, entropy, masked
    (loss, coef), with_entropy, masked = run([z_strong, z_weak], [strong_c, weak_c], labels)
    np.testing.assert_allclose(coef, [0.0, 2.0])
    weak_q = -np.linalg.norm(z_weak[:, None] - weak_c[None], axis=-1)
    weak_pce = _ce(weak_q, labels)
    np.testing.assert_allclose(loss, 2.0 * weak_pce, rtol=1e-5)
    strong_q = -np.linalg.norm(z_strong[:, None] - strong_c[None], axis=-1)
    log_p = _log_softmax(strong_q)
    entropy = -(np.exp(log_p) * log_p).sum(-1)
    np.testing.assert_allclose(with_entropy, 2.0 * weak_pce - 0.5 * entropy, rtol=1e-4, atol=1e-6)
    assert masked[1] == 0.0


PER_DEVICE = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxmm import batch_reduce as br
    from jaxmm.losses import prototype as proto
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 3, 8),
            np.array([1, 1, 0, 1, 1, 1, 0, 0], bool))
    prototypes = [rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)]

    def fn(z, y, valid):
        loss, coef = proto.pmr_loss([z, 2 * z], prototypes, y, alpha=2.0, rule="continuous",
                                    entropy_weight=0.5, where=valid)
        return proto.class_sums(z, y, 3, where=valid), coef, loss

    def local(*a):
        with br.per_device("data"):
            return fn(*a)
    put = [jax.device_put(r, NamedSharding(mesh, P("data"))) for r in rows]
    got = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"),) * 3,
                                out_specs=(P(), P(), P("data"))))(*put)
    want = jax.jit(fn)(*rows)
    np.testing.assert_array_equal(got[0][1], [1, 3, 1])   # counts of the valid rows of the whole batch
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    print("PROTOTYPE_PER_DEVICE_OK")
""")


def test_class_sums_and_pmr_scores_per_device_are_those_of_the_whole_batch():
    assert "PROTOTYPE_PER_DEVICE_OK" in run_on_devices(PER_DEVICE, 4)


def test_budget_gap_and_alignment_vanish_when_the_gap_is_closed():
    budgets = np.array([0.6, 0.3, 0.1], np.float32)
    z = np.array([[1.0, 0.2], [0.1, 1.0]], np.float32)
    anchor = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([1, 0])

    @jax.jit
    def run(budgets, z):
        closed = proto.budget_gap(jnp.array([0.9, 0.45, 0.15]), budgets, 0)
        gap = proto.budget_gap(jnp.array([0.9, 0.3, 0.5]), budgets, 0)
        loss = lambda f, g: proto.relative_alignment_loss(f, anchor, labels, g)
        return (closed, gap, loss(z, gap[1]), loss(z, gap[0]),
                jax.grad(lambda f: loss(f, gap[0]).sum())(z))
    closed, gap, open_loss, closed_loss, closed_grad = run(budgets, z)
    np.testing.assert_allclose(closed, 0.0, atol=1e-7)   # every π_m = (b_m / b_a) π_a
    np.testing.assert_allclose(gap, [0.0, 0.15, 0.0], atol=1e-6)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(open_loss, 0.15 * _ce(unit @ anchor.T / 0.1, labels), rtol=1e-4)
    np.testing.assert_allclose(closed_loss, 0.0)
    np.testing.assert_allclose(closed_grad, 0.0)


def test_alignment_ramp_is_linear_then_flat():
    ramp = proto.alignment_ramp(100, max_value=2.0)
    np.testing.assert_allclose([ramp(s) for s in (0, 10, 20, 90)], [0.0, 1.0, 2.0, 2.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="`metric` must be one of 'euclidean'"):
        proto.prototype_logits(FEATURES, FEATURES, metric="manhattan")
    with pytest.raises(ValueError, match="same D"):
        proto.prototype_logits(FEATURES, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="rule"):
        proto.pmr_coefficients(np.ones(2), alpha=1.0, rule="paper")
    with pytest.raises(ValueError, match="one prototype array per modality"):
        proto.pmr_loss([FEATURES], [FEATURES, FEATURES], LABELS, alpha=1.0)
    with pytest.raises(ValueError, match=r"\[B, D\] and \[B\]"):
        proto.class_sums(FEATURES, LABELS[:2], 3)
    with pytest.raises(ValueError, match="same shape"):
        proto.ema_update(np.ones(2), np.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"both be \[M\]"):
        proto.budget_gap(np.ones(2), np.ones(3), 0)
    with pytest.raises(ValueError, match="fraction"):
        proto.alignment_ramp(0)
