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
