"""MMCosine normalised fusion logits."""
import jax
import numpy as np
import pytest

from jaxmm.losses.mmcosine import cosine_fusion_logits, cosine_logits

RNG = np.random.default_rng(0)
Z_A, Z_V = RNG.normal(size=(5, 4)).astype(np.float32), RNG.normal(size=(5, 6)).astype(np.float32)
W_A, W_V = RNG.normal(size=(4, 3)).astype(np.float32), RNG.normal(size=(6, 3)).astype(np.float32)


def _unit(x, axis):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_logits_are_scaled_cosines_invariant_to_feature_and_weight_scale():
    @jax.jit
    def run(za, zv, wa, wv):
        return (cosine_logits(za, wa, scale=10.0),
                cosine_fusion_logits([za, zv], [wa, wv], scale=15.0),
                cosine_fusion_logits([3.0 * za, 0.01 * zv], [wa * np.array([1.0, 5.0, 0.2]), wv],
                                     scale=15.0))
    single, fused, rescaled = run(Z_A, Z_V, W_A, W_V)
    np.testing.assert_allclose(single, 10.0 * _unit(Z_A, 1) @ _unit(W_A, 0), rtol=1e-5, atol=1e-6)
    assert np.abs(single).max() <= 10.0 + 1e-5
    expected = 15.0 * (_unit(Z_A, 1) @ _unit(W_A, 0) + _unit(Z_V, 1) @ _unit(W_V, 0))
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rescaled, fused, rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same D"):
        cosine_logits(Z_A, W_V)
    with pytest.raises(ValueError, match="one kernel per modality"):
        cosine_fusion_logits([Z_A, Z_V], [W_A])
