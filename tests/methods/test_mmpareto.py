"""MMPareto method: the trainer's per-term encoder gradients combined in closed form, fit, options."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny import MODEL, OPT, initial_params, tiny_splits, train_cfg

from jaxmm.methods import get_method
from jaxmm.methods.mmpareto import group_terms
from jaxmm.train.loop import fit

from ._onestep import assert_traces, setup, step, term_gradients

GAMMA = 1.2


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def _expected(g_mm, g_uni, conflict_check):
    """γ · h · max(1, ‖g_mm + g_uni‖ / ‖h‖) per tensor, h = 2(w_mm g_mm + w_uni g_uni) (baselines.md §6)."""
    a, b = _flat(g_mm), _flat(g_uni)
    if conflict_check and a @ b > 0:
        w = 0.5
    else:
        w = float(np.clip((b @ b - a @ b) / ((a - b) @ (a - b)), 0.0, 1.0))

    def combine(x, y):
        h = 2 * (w * np.asarray(x) + (1 - w) * np.asarray(y))
        return GAMMA * h * max(1.0, np.linalg.norm(np.asarray(x) + np.asarray(y)) / np.linalg.norm(h))

    return jax.tree.map(combine, g_mm, g_uni), w


@pytest.mark.parametrize("conflict_check", [True, False])
def test_encoder_update_is_the_closed_form_min_norm_combination(conflict_check):
    method = get_method("mmpareto", conflict_check=conflict_check)
    model, batch, ctx = setup(method)
    ctx = dataclasses.replace(ctx, hparams={"gamma": jnp.asarray(GAMMA)})
    assert method.transform.per_term_grads
    np.testing.assert_allclose(method.terms(model, batch, ctx).signals["gamma"], GAMMA, rtol=1e-7)
    update, metrics, _ = step(method, model, batch, ctx)
    ref = term_gradients(method, model, batch, ctx)  # one jax.grad per term
    weights = []
    for m in "ab":
        expected, w = _expected(ref["ce"]["encoders"][m], ref[f"uni_ce/{m}"]["encoders"][m], conflict_check)
        weights.append(w)
        jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-4, atol=1e-7), update["encoders"][m],
                     expected)
    if not conflict_check:
        assert any(abs(w - 0.5) > 0.05 for w in weights)  # the min-norm weights are not the uniform ones
    # Heads and fusion keep the plain summed gradient.
    total = jax.tree.map(lambda *g: sum(g), *ref.values())
    for group in ("unimodal_heads", "fusion_head"):
        jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-7), update[group],
                     total[group])
    np.testing.assert_allclose(metrics["grad_norm/uni_ce/a"], np.linalg.norm(_flat(ref["uni_ce/a"])), rtol=1e-5)


def test_term_indices_for_three_modalities():
    # Terms in sorted order: ce, uni_ce/a, uni_ce/b, uni_ce/c.
    assert group_terms(("b", "a", "c")) == {"b": (0, 2), "a": (0, 1), "c": (0, 3)}


def test_fit_trains_once_compiled():
    r = fit(get_method("mmpareto"), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=3))
    assert r.trainer.traces == 1
    losses = np.array([h["train/loss"] for h in r.history])
    assert (losses[-1] < losses[0]).all()
    assert r.test[0]["acc"] > 0.4  # 3 classes: chance is 1/3
    assert {"train/grad_norm/ce", "train/grad_norm/uni_ce/a", "train/grad_norm/uni_ce/b"} <= set(r.history[-1])


def test_traces_on_the_audio_visual_resnet_model_and_with_three_modalities():
    assert_traces(get_method("mmpareto"), ["grad_norm/uni_ce/a", "grad_norm/uni_ce/c"], ["gamma"])


def test_bad_options():
    with pytest.raises(ValueError, match="no option"):
        get_method("mmpareto", gamma=2.0)  # gamma is a hyper-parameter, not an option


def test_detached_unimodal_heads_still_train_the_encoders():
    """PID-XOR's model detaches the unimodal heads, so each encoder's unimodal gradient is exactly 0.

    The official min-norm solver then weighs (0.999, 0.001) and the update is ``γ · g_sum``; a clipped
    closed form would give 0 and the encoders would never move.
    """
    model = dataclasses.replace(MODEL, detach_unimodal=True)
    splits = [tiny_splits()]
    sgd = dataclasses.replace(OPT, name="sgd", lr=0.1, momentum=0.0)
    init = initial_params(get_method("mmpareto"), splits[0], [0], model, sgd)
    after = fit(get_method("mmpareto"), splits, [0], model, sgd, train_cfg(epochs=1, batch_size=40)).state.params
    plain = fit(get_method("vanilla", unimodal_heads=False), splits, [0], model, sgd,
                train_cfg(epochs=1, batch_size=40)).state.params
    for m in ("a", "b"):
        kernel = lambda p: np.asarray(p["encoders"][m]["layers"][0]["kernel"])[0]
        moved, fused_only = kernel(after) - kernel(init), kernel(plain) - kernel(init)
        assert np.abs(moved).max() > 1e-4
        # one full-batch SGD step: γ = 1.5 times the fused-CE gradient alone (the heads' CE adds 0)
        np.testing.assert_allclose(moved, 1.5 * fused_only, rtol=1e-3, atol=1e-7)
