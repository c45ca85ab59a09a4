"""MLA: projector update (scalar / outer denominators), projection modes, first step, contract."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.mla import mla, update_projector

from .contract import check_contract, group_labels


def _owm(p, r, alpha, outer):
    k = p @ r[:, None]
    denom = alpha + (k @ r[None, :] if outer else r[None, :] @ k)
    new = p - (k @ k.T) / denom
    return new / np.linalg.norm(new)


@pytest.mark.parametrize("outer", [False, True])
def test_projector_update_matches_owm_formula(outer):
    features = jnp.array([[1.0, 2.0], [1.0, 0.0]])  # mean r = (1, 1)
    new = update_projector(jnp.eye(2), features, 0.1, denominator="outer" if outer else "scalar")
    np.testing.assert_allclose(new, _owm(np.eye(2), np.array([1.0, 1.0]), 0.1, outer), rtol=1e-6)
    # P <- I - 11ᵀ/(α + 2) (scalar) vs element-wise /(α + 1) (outer): they differ.
    scalar = np.eye(2) - np.ones((2, 2)) / 2.1
    np.testing.assert_allclose(_owm(np.eye(2), np.ones(2), 0.1, False), scalar / np.linalg.norm(scalar))


def _tree():
    rng = np.random.default_rng(0)
    leaf = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return {"audio": {"w": leaf(3, 4)}, "head": {"kernel": leaf(4, 3), "bias": leaf(3)}}


@pytest.mark.parametrize("projection", ["replace", "add", "none"])
def test_head_kernel_projection(projection):
    g = _tree()
    tx = mla(4, labels=group_labels, projection=projection)
    feats = jnp.asarray(np.random.default_rng(1).standard_normal((5, 4)), jnp.float32)
    state = tx.init(g)
    out, state = tx.update(g, state, features=feats, epoch_fraction=0.0)  # first step: no change
    jax.tree.map(np.testing.assert_array_equal, out, g)
    out, state = tx.update(g, state, features=feats, epoch_fraction=0.5)
    alpha = 0.1 ** 1.5
    p = _owm(np.eye(4), np.asarray(feats).mean(0), alpha, False)
    kernel = np.asarray(g["head"]["kernel"])
    expected = {"replace": p @ kernel, "add": kernel + p @ kernel, "none": kernel}[projection]
    np.testing.assert_allclose(out["head"]["kernel"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.projector, np.eye(4) if projection == "none" else p, rtol=1e-5)
    np.testing.assert_array_equal(out["head"]["bias"], g["head"]["bias"])
    np.testing.assert_array_equal(out["audio"]["w"], g["audio"]["w"])
    assert int(state.count) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(feature_dim=0), "`feature_dim` must be >= 1"),
    (dict(projection="project"), "`projection` must be one of"),
    (dict(denominator="matrix"), "`denominator` must be one of"),
    (dict(base=1.5), "`base` must be in \\(0, 1\\)"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mla(**{"feature_dim": 4, "labels": group_labels, **kwargs})


def test_missing_head_kernel_or_features():
    g = _tree()
    with pytest.raises(ValueError, match="no \\[7, C\\] leaf is labelled 'head'"):
        mla(7, labels=group_labels).update(g, mla(7, labels=group_labels).init(g),
                                           features=jnp.ones((2, 7)), epoch_fraction=0.0)
    with pytest.raises(ValueError, match="`features="):
        mla(4, labels=group_labels).update(g, mla(4, labels=group_labels).init(g), epoch_fraction=0.0)


def test_contract():
    check_contract(mla, dict(feature_dim=8, labels=group_labels),
                   lambda i: {"features": jnp.ones((4, 8)) * (i + 1), "epoch_fraction": 0.1 * i},
                   inject="base")


def test_feature_dim_inferred_from_the_head():
    g = _tree()
    assert mla(labels=group_labels).init(g).projector.shape == (4, 4)
    g["head"]["hidden"] = jnp.ones((3, 4))  # two input widths: ambiguous
    with pytest.raises(ValueError, match="cannot infer `feature_dim`.*\\[3, 4\\]"):
        mla(labels=group_labels).init(g)
