"""OGM-GE: coefficients from the published equation, modulation, noise, errors, contract."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.ogm_ge import ogm_ge, ogm_ge_coefficients

from .contract import check_contract, group_labels

AV = ("audio", "visual")


@pytest.mark.parametrize("scores, expected", [
    # rho_a = 30/20 = 1.5 > 1: audio slowed by 1 - tanh(0.8 * 1.5).
    ((30.0, 20.0), (1 - math.tanh(0.8 * 1.5), 1.0)),
    # rho_v = 40/10 = 4: visual slowed by 1 - tanh(0.8 * 4).
    ((10.0, 40.0), (1.0, 1 - math.tanh(0.8 * 4.0))),
    # Tie: the code's else-branch slows audio with rho = 1.
    ((5.0, 5.0), (1 - math.tanh(0.8), 1.0)),
    # Three modalities: ratios against the sum of the others, arg-max slowed.
    ((10.0, 20.0, 50.0), (1.0, 1.0, 1 - math.tanh(0.8 * 50.0 / 30.0))),
])
def test_coefficients_match_eq10(scores, expected):
    np.testing.assert_allclose(ogm_ge_coefficients(jnp.array(scores), 0.8), expected,
                               rtol=1e-6, atol=1e-6)


def test_ratio_offset_gives_continuous_variant():
    np.testing.assert_allclose(ogm_ge_coefficients(jnp.array([30.0, 20.0]), 0.8, ratio_offset=1.0),
                               [1 - math.tanh(0.8 * 0.5), 1.0], rtol=1e-6)


def _params():
    rng = np.random.default_rng(0)
    leaf = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    return {"audio": {"conv": leaf(3, 3, 16, 16), "dense": leaf(4, 3), "bias": leaf(3)},
            "visual": {"conv": leaf(3, 3, 16, 16), "bias": leaf(3)},
            "fusion": {"kernel": leaf(6, 3)}}


def test_default_modulates_every_kernel_of_an_mlp_encoder():
    """The default ``tensors="kernels"`` is not a no-op on encoders without conv kernels."""
    rng = np.random.default_rng(1)
    leaf = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    grads = {"audio": {"dense": leaf(4, 3), "bias": leaf(3)}, "visual": {"dense": leaf(5, 3)},
             "head": {"kernel": leaf(6, 3)}}
    tx = ogm_ge(AV, labels=group_labels, alpha=0.8, generalization=False, window=None)
    out, state = tx.update(grads, tx.init(grads), scores={"audio": 30.0, "visual": 20.0})
    k_a = 1 - math.tanh(0.8 * 1.5)
    np.testing.assert_allclose(out["audio"]["dense"], k_a * np.asarray(grads["audio"]["dense"]), rtol=1e-6)
    for group, name in [("audio", "bias"), ("visual", "dense"), ("head", "kernel")]:
        np.testing.assert_array_equal(out[group][name], grads[group][name])
    # The official conv-only rule leaves an MLP encoder untouched.
    tx = ogm_ge(AV, labels=group_labels, generalization=False, window=None, tensors="conv")
    out, _ = tx.update(grads, tx.init(grads), scores={"audio": 30.0, "visual": 20.0})
    np.testing.assert_array_equal(out["audio"]["dense"], grads["audio"]["dense"])


def test_ogm_scales_dominant_conv_kernels_only():
    grads = _params()
    tx = ogm_ge(AV, labels=group_labels, alpha=0.8, generalization=False, window=(2, 5),
                tensors="conv")
    state = tx.init(grads)
    scores = {"audio": 30.0, "visual": 20.0}
    k_a = 1 - math.tanh(0.8 * 1.5)
    out, state = tx.update(grads, state, scores=scores, epoch=3)
    np.testing.assert_allclose(out["audio"]["conv"], k_a * grads["audio"]["conv"], rtol=1e-6)
    for group, name in [("audio", "dense"), ("audio", "bias"), ("visual", "conv"),
                        ("visual", "bias"), ("fusion", "kernel")]:
        np.testing.assert_array_equal(out[group][name], grads[group][name])
    np.testing.assert_allclose(state.coefficients, [k_a, 1.0], rtol=1e-6)
    # Outside the window: identity.
    out, _ = tx.update(grads, state, scores=scores, epoch=6)
    np.testing.assert_array_equal(out["audio"]["conv"], grads["audio"]["conv"])
    # tensors="kernels" adds the audio dense kernel; tensors="all" the bias too.
    tx = ogm_ge(AV, labels=group_labels, generalization=False, tensors="kernels", window=None)
    out, _ = tx.update(grads, tx.init(grads), scores=scores)
    np.testing.assert_allclose(out["audio"]["dense"], k_a * grads["audio"]["dense"], rtol=1e-6)
    np.testing.assert_array_equal(out["audio"]["bias"], grads["audio"]["bias"])
    tx = ogm_ge(AV, labels=group_labels, generalization=False, tensors="all", window=None)
    out, _ = tx.update(grads, tx.init(grads), scores=scores)
    np.testing.assert_allclose(out["audio"]["bias"], k_a * grads["audio"]["bias"], rtol=1e-6)
    # A traced alpha passed as an extra arg replaces the factory's.
    out, state = tx.update(grads, tx.init(grads), scores=scores, alpha=jnp.asarray(0.3))
    np.testing.assert_allclose(state.coefficients, [1 - math.tanh(0.3 * 1.5), 1.0], rtol=1e-6)


def test_before_adam_a_constant_coefficient_cancels_and_before_sgd_it_scales():
    """Why the experiments use SGD: Adam's m/sqrt(v) is invariant to a constant gradient scale k."""
    import optax

    grads = _params()
    scores = {"audio": 30.0, "visual": 20.0}  # audio slowed by k = 1 - tanh(1.2) ≈ 0.17 every step
    k_a = 1 - math.tanh(0.8 * 1.5)
    for inner, ratio in ((optax.adam(1e-3, eps=1e-12), 1.0), (optax.sgd(1e-3, momentum=0.9), k_a)):
        modulated = optax.chain(ogm_ge(AV, labels=group_labels, generalization=False, window=None), inner)
        s_mod, s_ref = modulated.init(grads), inner.init(grads)
        for _ in range(3):
            u_mod, s_mod = modulated.update(grads, s_mod, scores=scores)
            u_ref, s_ref = inner.update(grads, s_ref)
        np.testing.assert_allclose(u_mod["audio"]["conv"], ratio * u_ref["audio"]["conv"], rtol=1e-5)
        np.testing.assert_allclose(u_mod["visual"]["conv"], u_ref["visual"]["conv"], rtol=1e-6)


def test_ogm_ge_noise_scaled_by_gradient_std_on_every_modality():
    grads = _params()
    tx = ogm_ge(AV, labels=group_labels, alpha=0.8, window=None, seed=3)
    out, _ = tx.update(grads, tx.init(grads), scores={"audio": 30.0, "visual": 20.0})
    k = {"audio": 1 - math.tanh(0.8 * 1.5), "visual": 1.0}
    for m in AV:
        g = np.asarray(grads[m]["conv"])
        noise = (np.asarray(out[m]["conv"]) - k[m] * g) / (g.std(ddof=1) + 1e-8)
        assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1.0) < 0.1  # 2304 draws
    np.testing.assert_array_equal(out["audio"]["bias"], grads["audio"]["bias"])
    # A `key` extra arg replaces the state's stream: same key, same noise; another key, other noise.
    tx = ogm_ge(AV, labels=group_labels, window=None)
    run = lambda key: tx.update(grads, tx.init(grads), scores={"audio": 1.0, "visual": 2.0}, key=key)[0]
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    np.testing.assert_array_equal(run(k1)["audio"]["conv"], run(k1)["audio"]["conv"])
    assert not np.allclose(run(k1)["audio"]["conv"], run(k2)["audio"]["conv"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(modalities=("audio",)), "at least 2 modalities"),
    (dict(modalities="audio"), "sequence of names"),
    (dict(alpha=0.0), "`alpha` must be positive"),
    (dict(window=(5, 2)), "`window`"),
    (dict(ratio_offset=-1.0), "`ratio_offset`"),
    (dict(tensors="bn"), "`tensors` must be one of"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ogm_ge(**{"modalities": AV, "labels": group_labels, **kwargs})


def test_missing_extra_args_are_named():
    grads = _params()
    tx = ogm_ge(AV, labels=group_labels)
    with pytest.raises(ValueError, match="`scores="):
        tx.update(grads, tx.init(grads), epoch=0)
    with pytest.raises(ValueError, match="no entry for modalities \\['visual'\\]"):
        tx.update(grads, tx.init(grads), scores={"audio": 1.0}, epoch=0)
    with pytest.raises(ValueError, match="`epoch="):
        tx.update(grads, tx.init(grads), scores={"audio": 1.0, "visual": 2.0})
    with pytest.raises(ValueError, match="`tensors` must be one of 'conv', 'kernels', 'all'; got 'bn'"):
        ogm_ge(AV, labels=group_labels, tensors="bn")


def test_contract():
    check_contract(ogm_ge, dict(modalities=AV, labels=group_labels, alpha=0.5, window=(0, 5)),
                   lambda i: {"scores": {"audio": 3.0 + i, "visual": 2.0}, "epoch": i},
                   inject="alpha")
