import jax
import numpy as np
import pytest

from jaxmm.data.synthetic import pid_xor

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost


def test_source_frequencies_follow_probs():
    d = jax.device_get(pid_xor.generate(jax.random.key(0), 40000, np.array([0.1, 0.2, 0.3, 0.4])))
    np.testing.assert_allclose(np.bincount(d["source"], minlength=4) / 40000, [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_blocks_carry_only_their_source():
    d = jax.device_get(pid_xor.generate(jax.random.key(1), 20000, np.full(4, 0.25)))
    y, src = d["y"], d["source"]
    sign = 2 * y - 1
    u1 = src == 0
    # Unique-to-x0 examples: the unique block of x0 is a deterministic function of a sign-y latent.
    proj = pid_xor.projections()
    z = np.linalg.lstsq(np.asarray(proj["u0"])[:6], d["x0"][u1][:, :6].T, rcond=None)[0].T
    assert np.all(np.sign(z) == sign[u1][:, None])
    # Synergy examples: one modality's synergy block alone says nothing about y ...
    syn = src == 3
    proj_s0 = np.linalg.lstsq(np.asarray(proj["s0"])[12:18], d["x0"][syn][:, 12:18].T, rcond=None)[0].T
    proj_s1 = np.linalg.lstsq(np.asarray(proj["s1"])[12:18], d["x1"][syn][:, 12:18].T, rcond=None)[0].T
    b0, b1 = proj_s0[:, 0] > 0, proj_s1[:, 0] > 0
    assert abs(np.mean(b0 == y[syn]) - 0.5) < 0.03
    # ... while their XOR is the label.
    assert np.mean((b0 ^ b1) == y[syn]) == 1.0
    # Inactive blocks stay standard noise.
    assert abs(d["x0"][~syn][:, 12:18].std() - 1.0) < 0.03


def test_splits_sizes_standardisation_and_oracle():
    s = pid_xor.splits(0, (0.3, 0.0, 0.4, 0.3))
    assert (len(s.train), len(s.val), len(s.test)) == (1800, 200, 4000)
    np.testing.assert_allclose(s.train.inputs["x0"].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(s.train.inputs["x0"].std(0), 1, atol=1e-3)
    syn = s.train.meta["source"] == 3
    assert s.train.meta["mask/x0"][syn][:, 12:18].all() and not s.train.meta["mask/x0"][~syn].any()
    assert s.train.group_names == pid_xor.SOURCES


def test_simplex_grid():
    grid = pid_xor.simplex_grid(0.05)
    assert len(grid) == 231
    assert all(abs(sum(p) - 1) < 1e-9 and p[1] == 0 and min(p) >= 0 for p in grid)


def test_bad_probs():
    with pytest.raises(ValueError, match="summing to 1"):
        pid_xor.splits(0, (0.5, 0.5, 0.5, 0.0))
