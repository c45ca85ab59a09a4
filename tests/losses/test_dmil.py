"""DMIL variational decomposition losses.

Expected values are computed in numpy and each test compiles one program, to keep it fast.
One 4-device subprocess checks that inside a per-device step (``jax.shard_map``, 2 rows per device)
the reparameterised samples, the InfoNCE alignment and the CLUB bound, gradients included, are
those of the whole batch.
"""
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import dmil

from _devices import GRADIENT_CHECK, run_on_devices

RNG = np.random.default_rng(0)
R1 = RNG.normal(size=(6, 4)).astype(np.float32)
R2 = RNG.normal(size=(6, 4)).astype(np.float32)


def test_id_loss_is_kl_plus_reconstruction():
    z, zero3 = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    mu, logvar = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)
    mu_m = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)

    @jax.jit
    def run(z):
        loss = lambda t, **kw: dmil.id_variational_loss(t, zero3, mu, logvar, mu, logvar, **kw)
        return (dmil.id_variational_loss(z, z, mu, logvar, mu, logvar),
                dmil.id_variational_loss(z, zero3, mu_m, logvar, mu, logvar, beta_kl=0.5),
                loss(z, reconstruction_error="mse"),
                jax.grad(lambda t: loss(t).sum())(z),
                jax.grad(lambda t: loss(t, detach_target=False).sum())(z))
    perfect, weighted, mse, grad_detached, grad_live = run(z)
    np.testing.assert_allclose(perfect, 0.0)
    np.testing.assert_allclose(weighted, 0.5 * 0.5 * np.array([1.0, 4.0]) + 3.0, rtol=1e-6)
    np.testing.assert_allclose(mse, 1.0)
    np.testing.assert_allclose(grad_detached, 0.0)   # the target is detached by default
    np.testing.assert_allclose(grad_live, 2.0)


def test_reparameterize_moments():
    sample = np.asarray(dmil.reparameterize(jax.random.key(2), np.full((20000,), 3.0, np.float32),
                                            np.full((20000,), np.log(4.0), np.float32)))
    np.testing.assert_allclose([sample.mean(), sample.std()], [3.0, 2.0], rtol=0.03)


def test_alignment_and_uniqueness_penalties():
    u = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)
    r = np.array([[0.0, 2.0], [1.0, 0.0]], np.float32)
    zeros, ones = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    blind = np.broadcast_to(R1.mean(0), R1.shape)

    @jax.jit
    def run(r1, r2):
        return dict(
            aligned=dmil.redundancy_alignment_loss(r1, r1 + 0.01 * r2),
            mismatched=dmil.redundancy_alignment_loss(r1, r2),
            mse=dmil.redundancy_alignment_loss(r1, r2, kind="mse"),
            orthogonal=dmil.uniqueness_penalty(u, r),
            parallel=dmil.uniqueness_penalty(u, 2 * u),
            club_blind=dmil.uniqueness_penalty(r2, r1, kind="club", club_mu=blind,
                                               club_logvar=jnp.zeros_like(r1)),
            club_sharp=dmil.uniqueness_penalty(r2, r1, kind="club", club_mu=r1,
                                               club_logvar=jnp.zeros_like(r1)),
            nll=dmil.club_fit_loss(r1, r1, jnp.zeros_like(r1)),
            total=dmil.cd_variational_loss(u, r, zeros, zeros, ones, zeros, beta_kl=2.0))
    out = run(R1, R2)
    assert out["aligned"].mean() < out["mismatched"].mean()
    np.testing.assert_allclose(out["mse"], ((R1 - R2) ** 2).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(out["orthogonal"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["parallel"], 1.0, rtol=1e-6)
    # CLUB with a q(r|u) that ignores u estimates no information on average, and some when it
    # predicts r from u.
    np.testing.assert_allclose(out["club_blind"].mean(), 0.0, atol=1e-5)
    assert out["club_sharp"].mean() > 1.0
    np.testing.assert_allclose(out["nll"], 0.0)
    np.testing.assert_allclose(out["total"], 2.0, atol=1e-6)   # 2 × KL(N(1,1)‖N(0,1)) × 2 dims


def test_synergy_features_make_xor_linearly_separable():
    n1 = np.array([[-1.0], [-1.0], [1.0], [1.0]], np.float32)
    n2 = np.array([[-1.0], [1.0], [-1.0], [1.0]], np.float32)
    feats = np.asarray(dmil.synergy_features(n1, n2))
    assert feats.shape == (4, 4)
    np.testing.assert_array_equal(feats[:, 2] < 0, [False, True, True, False])   # x1 XOR x2


def test_gated_aggregate():
    comps = [np.full((2, 3), float(c), np.float32) for c in range(4)]
    gate = np.array([[0.0, 0.0, 50.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    logits = [RNG.normal(size=(2, 3)).astype(np.float32) for _ in range(4)]
    run = jax.jit(lambda c, l, g: (dmil.gated_aggregate(c, g),
                                   dmil.gated_aggregate(l, g, mix="probs")))
    mixed, probs = run(comps, logits, gate)
    np.testing.assert_allclose(mixed[0], 2.0, rtol=1e-6)   # the gate picks component 2
    np.testing.assert_allclose(mixed[1], 1.5, rtol=1e-6)   # uniform gate: mean of 0..3
    np.testing.assert_allclose(np.exp(probs).sum(-1), 1.0, rtol=1e-6)
    shifted = logits[2][0] - logits[2][0].max()
    np.testing.assert_allclose(probs[0], shifted - np.log(np.exp(shifted).sum()), atol=1e-5)


def test_stage_term_weights():
    assert dmil.stage_term_weights(1) == {"task_m": 1.0, "var_mn": 1.0}
    stage2 = dmil.stage_term_weights(2, alpha=0.5, gate_in_stage2=False)
    assert stage2 == {"task_components": 1.0, "var_ur": 1.0, "align_r": 0.5, "task_fused": 0.0}
    stage3 = dmil.stage_term_weights(3, alpha=2.0, beta=0.1, gamma=0.2)
    assert stage3["task_fused"] == 1.0 and stage3["var_mn"] == pytest.approx(0.1)
    assert stage3["align_r"] == pytest.approx(0.4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="`kind` must be one of 'infonce', 'mse'; got 'cosine'"):
        dmil.redundancy_alignment_loss(R1, R2, kind="cosine")
    with pytest.raises(ValueError, match="club_mu and club_logvar"):
        dmil.uniqueness_penalty(R1, R2, kind="club")
    with pytest.raises(ValueError, match="same shape"):
        dmil.uniqueness_penalty(R1, R2[:, :2])
    with pytest.raises(ValueError, match="must match"):
        dmil.id_variational_loss(R1, R2[:3], R1, R1, R1, R1)
    with pytest.raises(ValueError, match="reconstruction_error"):
        dmil.id_variational_loss(R1, R2, R1, R1, R1, R1, reconstruction_error="l1")
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        dmil.gated_aggregate([R1, R2], np.zeros((6, 3)))
    with pytest.raises(ValueError, match="stages 1, 2 and 3"):
        dmil.stage_term_weights(4)
    with pytest.raises(ValueError, match="same shape"):
        dmil.synergy_features(R1, R2[:2])


PER_DEVICE = GRADIENT_CHECK + textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from jaxmm.losses import dmil
    rng = np.random.default_rng(0)
    rows = tuple(rng.normal(size=(8, 3)).astype(np.float32) for _ in range(4))

    def terms(r1, r2, mu, logvar):
        return (dmil.reparameterize(jax.random.key(5), mu, logvar), dmil.redundancy_alignment_loss(r1, r2),
                dmil.uniqueness_penalty(r1, r2, kind="club", club_mu=mu, club_logvar=logvar))

    check_per_device(terms, rows, (P("data"),) * 4, (0, 1, 2, 3))
    print("DMIL_PER_DEVICE_OK")
""")


def test_losses_and_gradients_per_device_are_those_of_the_whole_batch():
    assert "DMIL_PER_DEVICE_OK" in run_on_devices(PER_DEVICE, 4)
