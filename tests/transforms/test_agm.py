"""AGM: Shapley responses, scores on a toy model, coefficients, modulation, clipping, contract."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.agm import (agm, agm_coefficients, agm_scores, modulated_logits,
                                  shapley_responses)

from .contract import check_contract, group_labels

AV = ("audio", "visual")


def _toy():
    """Late-fusion linear model f(a, v) = W_a a + W_v v + b and its masked passes."""
    rng = np.random.default_rng(0)
    w_a, w_v, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=4)
    a, v = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    y = np.array([0, 1, 2, 3, 1])
    passes = {("audio", "visual"): a @ w_a + v @ w_v + b,
              ("audio",): a @ w_a + b,       # visual input zeroed
              ("visual",): v @ w_v + b}      # audio input zeroed
    return {k: jnp.asarray(x, jnp.float32) for k, x in passes.items()}, (a @ w_a, v @ w_v, b), y


def test_shapley_responses_on_late_fusion_are_head_slices_plus_half_bias():
    passes, (za, zv, b), _ = _toy()
    o = shapley_responses(passes, AV)
    np.testing.assert_allclose(o["audio"], za + b / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o["visual"], zv + b / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o["audio"] + o["visual"], passes[("audio", "visual")], atol=1e-5)


def test_shapley_responses_three_players_additive_game():
    c = {"a": 1.0, "b": 2.0, "c": 4.0}
    subsets = [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    # v(S) = Σ c_m + 3·[a, b ∈ S]: a and b split the interaction bonus.
    game = {s: jnp.asarray(sum(c[m] for m in s) + 3.0 * ({"a", "b"} <= set(s))) for s in subsets}
    o = shapley_responses(game, ("a", "b", "c"))
    np.testing.assert_allclose([o["a"], o["b"], o["c"]], [2.5, 3.5, 4.0], rtol=1e-6)
    with pytest.raises(ValueError, match="no entry for the subset"):
        shapley_responses({s: v for s, v in game.items() if s != ("a", "c")}, ("a", "b", "c"))


def test_scores_on_toy_model():
    passes, (za, zv, b), y = _toy()
    scores = agm_scores(shapley_responses(passes, AV), jnp.asarray(y))
    for name, logits in (("audio", za + b / 2), ("visual", zv + b / 2)):
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        expected = np.mean(-np.maximum(logp[np.arange(5), y], math.log(1e-8)))
        np.testing.assert_allclose(scores[name], expected, rtol=1e-5)
        # With padding weights the mean runs over the valid examples only.
        valid = np.array([1, 1, 0, 1, 0], np.float32)
        weighted = agm_scores(shapley_responses(passes, AV), jnp.asarray(y), jnp.asarray(valid))
        np.testing.assert_allclose(weighted[name], np.mean(-np.maximum(logp[np.arange(5), y], math.log(1e-8))[valid > 0]),
                                   rtol=1e-5)
    # p(y) below 1e-8 is clamped: -log(1e-8).
    far = agm_scores({"audio": jnp.array([[0.0, -40.0]])}, jnp.array([1]))
    np.testing.assert_allclose(far["audio"], -math.log(1e-8), rtol=1e-6)


def test_coefficients():
    kappa = agm_coefficients({"audio": 1.0, "visual": 2.0}, {"audio": 1.5, "visual": 1.5}, alpha=1.0)
    # r_a = exp(s_v - s_a) = e, running ratio 1: kappa_a = exp(1 - e); kappa_v = exp(1 - 1/e).
    np.testing.assert_allclose(kappa["audio"], math.exp(1 - math.e), rtol=1e-6)
    np.testing.assert_allclose(kappa["visual"], math.exp(1 - math.exp(-1)), rtol=1e-6)
    capped = agm_coefficients({"audio": 5.0, "visual": 5.0}, {"audio": 0.0, "visual": 4.0}, 0.5)
    np.testing.assert_allclose(capped["audio"], math.exp(0.5 * 10.0), rtol=1e-6)


def test_modulated_logits_value_and_gradients():
    o = {"audio": jnp.array([[1.0, 2.0]]), "visual": jnp.array([[0.5, -1.0]])}
    kappa = {"audio": 0.5, "visual": 2.0}
    np.testing.assert_allclose(modulated_logits(o, kappa), o["audio"] + o["visual"], rtol=1e-6)
    grads = jax.grad(lambda o: jnp.sum(modulated_logits(o, kappa) * jnp.array([[1.0, 3.0]])))(o)
    np.testing.assert_allclose(grads["audio"], [[0.5, 1.5]], rtol=1e-6)
    np.testing.assert_allclose(grads["visual"], [[2.0, 6.0]], rtol=1e-6)


def _grads(head_scale):
    return {"audio": {"w": jnp.full((2, 2), 0.3)}, "visual": {"w": jnp.full((2, 2), -0.4)},
            "fusion": {"kernel": jnp.full((2, 3), head_scale), "bias": jnp.full((3,), 5.0)}}


def test_groups_mode_scales_modalities_in_window():
    tx = agm(AV, labels=group_labels, mode="groups", window=(0, 3), clip_threshold=None)
    g = _grads(0.1)
    out, _ = tx.update(g, tx.init(g), coefficients={"audio": 2.0, "visual": 0.5}, epoch=1)
    np.testing.assert_allclose(out["audio"]["w"], 0.6, rtol=1e-6)
    np.testing.assert_allclose(out["visual"]["w"], -0.2, rtol=1e-6)
    np.testing.assert_array_equal(out["fusion"]["kernel"], g["fusion"]["kernel"])
    out, _ = tx.update(g, tx.init(g), coefficients={"audio": 2.0, "visual": 0.5}, epoch=4)
    np.testing.assert_array_equal(out["audio"]["w"], g["audio"]["w"])


def test_clipping_rule_reads_head_weight_only():
    tx = agm(AV, labels=group_labels)  # official: logits mode, clip at |g| > 1 to norm 1
    small = _grads(0.9)  # head bias 5.0 is ignored by the trigger
    out, _ = tx.update(small, tx.init(small))
    jax.tree.map(np.testing.assert_array_equal, out, small)
    big = _grads(1.5)
    out, _ = tx.update(big, tx.init(big))
    norm = math.sqrt(4 * 0.09 + 4 * 0.16 + 6 * 1.5**2 + 3 * 25.0)
    scale = 1.0 / (norm + 1e-6)
    np.testing.assert_allclose(out["fusion"]["kernel"], 1.5 * scale, rtol=1e-5)
    np.testing.assert_allclose(out["audio"]["w"], 0.3 * scale, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="hooks"), "`mode` must be one of"),
    (dict(window=(3, 1)), "`window`"),
    (dict(clip_threshold=0.0), "`clip_threshold` must be positive"),
    (dict(max_norm=-1.0), "`max_norm` must be positive"),
    (dict(modalities=("audio", "audio")), "duplicates"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        agm(**{"modalities": AV, "labels": group_labels, **kwargs})


def test_missing_head_or_coefficients():
    g = {"audio": {"w": jnp.ones((2, 2))}, "visual": {"w": jnp.ones((2, 2))}}
    with pytest.raises(ValueError, match="no leaf with ndim >= 2 is labelled 'fusion'"):
        agm(AV, labels=group_labels).update(g, None)
    with pytest.raises(ValueError, match="`coefficients="):
        agm(AV, labels=group_labels, mode="groups", clip_threshold=None).update(g, None, epoch=0)


def test_contract():
    check_contract(agm, dict(modalities=AV, labels=group_labels, mode="groups", clip_threshold=0.01),
                   lambda i: {"coefficients": {"audio": 1.5 + i, "visual": 0.5}, "epoch": i},
                   inject="max_norm")
