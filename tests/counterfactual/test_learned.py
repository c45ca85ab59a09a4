import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.counterfactual.learned import LearnedMaskConfig, learn_unimodal_mask
from jaxmm.losses import sigmoid_cross_entropy


def test_learned_mask_finds_the_coordinates_the_head_uses():
    # A fixed unimodal head that reads coordinates 0 and 1 only.
    key = jax.random.key(0)
    y = jax.random.bernoulli(key, 0.5, (64,)).astype(jnp.int32)
    x = jax.random.normal(jax.random.key(1), (64, 6)).at[:, :2].set(1.0 * (2 * y[:, None] - 1))
    head = lambda xc: 1.5 * (xc[:, 0] + xc[:, 1])
    loss = lambda xc: sigmoid_cross_entropy(head(xc), y)
    fill = jnp.zeros_like(x)
    important = learn_unimodal_mask(loss, x, fill, LearnedMaskConfig(steps=50, lr=1.0, sparsity=0.03))
    assert float(important[:, :2].mean()) > 0.95
    assert float(important[:, 2:].mean()) < 0.05
    assert set(np.unique(important)) <= {0.0, 1.0}


def test_sparsity_price_keeps_the_mask_empty_when_corruption_is_useless():
    x = jax.random.normal(jax.random.key(0), (16, 4))
    loss = lambda xc: jnp.zeros(xc.shape[0])  # a head nothing can hurt
    important = learn_unimodal_mask(loss, x, jnp.zeros_like(x), LearnedMaskConfig(steps=20, lr=0.5, init_logit=0.5))
    assert float(important.sum()) == 0.0


def test_early_stop_freezes_the_logits():
    x = jax.random.normal(jax.random.key(0), (8, 3))
    loss = lambda xc: jnp.zeros(xc.shape[0])
    cfg = LearnedMaskConfig(steps=30, lr=1e-6, init_logit=1.0, tol=1e-3, patience=2)
    np.testing.assert_array_equal(learn_unimodal_mask(loss, x, x, cfg), 1.0)


def test_bad_config():
    with pytest.raises(ValueError):
        LearnedMaskConfig(steps=0)


def test_no_early_stop_skips_the_stopping_rule_without_changing_the_mask():
    # tol=0 skips the change statistics; a positive tol that never triggers computes them and must agree.
    key_x, key_w, key_y = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(key_x, (32, 8))
    w = jax.random.normal(key_w, (8,))
    y = jax.random.bernoulli(key_y, 0.5, (32,)).astype(jnp.int32)
    loss = lambda xc: sigmoid_cross_entropy(xc @ w, y)
    masks = [jax.jit(lambda x, tol=tol: learn_unimodal_mask(loss, x, jnp.zeros_like(x), LearnedMaskConfig(
        steps=20, lr=0.5, sparsity=0.05, tol=tol, patience=25)))(x) for tol in (0.0, 1e-30)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert 0.0 < float(masks[0].mean()) < 1.0
