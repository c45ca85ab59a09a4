import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _tiny import MODEL, OPT, tiny_splits, train_cfg
from jaxmm.data.types import Batch
from jaxmm.losses import classification_loss
from jaxmm.methods import EpochHook, StepContext, get_method
from jaxmm.methods.dmil import decompose, dmil_gate_weights, stage_of, trained_in_stage
from jaxmm.train.loop import fit

from ._helpers import make_model


def _setup(method, dims, num_outputs=3, batch_size=16, seed=0):
    model = make_model(method, dims, num_outputs, MODEL, seed)
    rng = np.random.default_rng(seed)
    batch = Batch(inputs={m: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32) for m, d in dims.items()},
                  label=jnp.asarray(rng.integers(0, max(num_outputs, 2), batch_size)), index=jnp.arange(batch_size),
                  meta={"valid": jnp.ones(batch_size)})
    state = method.init_state(model, batch)
    ctx = StepContext(jax.random.key(1), {k: jnp.asarray(v) for k, v in method.hparams.items()}, jnp.asarray(0), state,
                      jnp.asarray(0), tuple(model.modalities))
    return model, batch, ctx


def test_stages_and_which_parameters_train():
    np.testing.assert_array_equal([int(stage_of(e, (2, 3))) for e in range(7)], [1, 1, 2, 2, 2, 3, 3])
    assert int(stage_of(0, (0, 0))) == 3
    method = get_method("dmil", feature_width=8, penalty="club", stage_epochs=(1, 1))
    model = make_model(method, {"a": 4, "b": 4}, 3, MODEL, 0)
    params = nnx.split(model, nnx.Param, ...)[1]
    for stage in (1, 2, 3):
        train = trained_in_stage(params, jnp.asarray(stage))
        # the method's trainable mask at an epoch of that stage (stage_epochs=(1, 1): epoch = stage - 1)
        jax.tree.map(np.testing.assert_array_equal, train,
                     method.trainable(params, StepContext(epoch=jnp.asarray(stage - 1))))
        flat = {"/".join(str(getattr(k, "key", k)) for k in path): bool(v)
                for path, v in jax.tree_util.tree_leaves_with_path(train)}
        for name, on in flat.items():
            first = name.startswith("encoders/") or name.startswith("extras/dmil/id/")
            assert on == (stage == 3 or (stage == 1) == first), (stage, name)
        assert any(n.startswith("extras/dmil/cd/0/club") for n in flat)
    dm = model.extras["dmil"]
    np.testing.assert_array_equal(dm.id[0].q_m.layer.bias[...][8:], -4.0)  # init_logvar of M, N, R, U heads
    np.testing.assert_array_equal(dm.cd[1].q_u.layer.bias[...][8:], -4.0)
    assert dm.cd[0].club.layer.bias[...].shape == (16,)


def test_gate_mixes_component_logits_and_sums_to_one():
    method = get_method("dmil", feature_width=8)
    model, batch, ctx = _setup(method, {"a": 4, "b": 4})
    model.eval()
    gate = dmil_gate_weights(model, batch.inputs)
    assert gate.shape == (16, 4) and bool(jnp.all(gate >= 0))
    np.testing.assert_allclose(gate.sum(-1), 1.0, rtol=1e-6)
    out = decompose(model, batch.inputs)
    expected = sum(gate[:, c, None] * out["component_logits"][c] for c in range(4))
    fwd = method.forward(model, batch.inputs, ctx)
    np.testing.assert_allclose(fwd.logits, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fwd.unimodal_logits["a"], out["m_logits"]["a"])
    # Mixing probabilities instead: the output is the log of Σ_c g_c softmax(ŷ_c).
    probs = get_method("dmil", feature_width=8, mix="probs").forward(model, batch.inputs, ctx).logits
    mixture = sum(gate[:, c, None] * jax.nn.softmax(out["component_logits"][c]) for c in range(4))
    np.testing.assert_allclose(jnp.exp(probs), mixture, rtol=1e-5, atol=1e-6)


def test_fc_ablation_terms_equal_hand_computation():
    method = get_method("dmil", feature_width=8, layers="fc", alignment="mse")
    model, batch, ctx = _setup(method, {"a": 4, "b": 4})
    out = method.terms(model, batch, ctx)
    terms, aux = out.losses, out.logs
    dm, z = model.extras["dmil"], model.encode(batch.inputs)
    m = {k: dm.id[i].q_m.layer(z[k]) for i, k in enumerate("ab")}
    n = {k: dm.id[i].q_n.layer(z[k]) for i, k in enumerate("ab")}
    sse = sum(jnp.sum((z[k] - dm.id[i].decoder(jnp.concatenate([m[k], n[k]], -1))) ** 2, -1)
              for i, k in enumerate("ab"))
    np.testing.assert_allclose(terms["var_mn"], sse, rtol=1e-5)  # fc layers: no KL
    task_m = sum(classification_loss(dm.id[i].head(m[k]), batch.label) for i, k in enumerate("ab"))
    np.testing.assert_allclose(terms["task_m"], task_m, rtol=1e-5)
    r = [dm.cd[i].q_r.layer(m[k]) for i, k in enumerate("ab")]
    np.testing.assert_allclose(terms["align_r"], jnp.mean((r[0] - r[1]) ** 2, -1), rtol=1e-5)
    assert set(terms) == {"task_m", "var_mn", "task_fused", "task_components", "align_r", "var_ur"}
    assert int(aux["stage"]) == 1


def test_term_weights_follow_the_three_stages():
    method = get_method("dmil", feature_width=8, stage_epochs=(1, 2), penalty="club", gate_in_stage2=False)
    hp = {"alpha": 2.0, "beta": 0.5, "gamma": 0.25, "beta_kl": 1.0}
    w = lambda epoch: {k: float(v) for k, v in method.term_weights(
        StepContext(None, hp, jnp.asarray(epoch), {})).items()}
    assert w(0) == {"task_m": 1, "var_mn": 1, "task_fused": 0, "task_components": 0, "align_r": 0,
                    "var_ur": 0, "club_fit": 0}
    assert w(2) == {"task_m": 0, "var_mn": 0, "task_fused": 0, "task_components": 1, "align_r": 2,
                    "var_ur": 1, "club_fit": 1}
    assert w(3) == {"task_m": 0.5, "var_mn": 0.5, "task_fused": 1, "task_components": 0.25, "align_r": 0.5,
                    "var_ur": 0.25, "club_fit": 1}


def test_id_only_variant_for_three_modalities():
    dims = {"a": 4, "b": 4, "c": 4}
    method = get_method("dmil", feature_width=8, variant="id_only", num_modalities=3)
    model, batch, ctx = _setup(method, dims)
    out = method.terms(model, batch, ctx)
    terms, aux = out.losses, out.logs
    assert set(terms) == {"task_m", "var_mn", "task_fused"}
    np.testing.assert_allclose(sum(float(aux[f"gate/{m}"]) for m in dims), 1.0, rtol=1e-5)
    model.eval()
    assert dmil_gate_weights(model, batch.inputs).shape == (16, 3)
    assert set(method.forward(model, batch.inputs, ctx).unimodal_logits) == set(dims)


def test_bad_options_and_mismatched_model_raise():
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        get_method("dmil", feature_width=8, num_modalities=3)
    with pytest.raises(ValueError, match="`layers` must be one of"):
        get_method("dmil", layers="dense")
    with pytest.raises(ValueError, match="stage_epochs"):
        get_method("dmil", stage_epochs=(3, -1))
    # the default reads the encoders' width (8) from the model
    default = make_model(get_method("dmil"), {"a": 4, "b": 4}, 3, MODEL, 0)
    assert default.extras["dmil"].id[0].q_m.layer.bias[...].shape == (16,)  # mean and log-variance of width 8
    with pytest.raises(ValueError, match="encoders output"):
        _setup(get_method("dmil", feature_width=16), {"a": 4, "b": 4})
    with pytest.raises(ValueError, match="built for 2 modalities"):
        make_model(get_method("dmil"), {"a": 4, "b": 4, "c": 4}, 3, MODEL, 0)


def test_fit_freezes_each_stage_bit_identically_and_trains():
    """Stage 1 (epochs 0-1) leaves CD/synergy/heads/gate untouched, stage 2 (epoch 2) the encoders and ID —
    with Adam and weight decay, which zeroing the gradient alone would not stop."""
    snapshots = []
    base = get_method("dmil", feature_width=8, stage_epochs=(2, 1))
    assert base.transform is None and base.epoch_end is None  # freezing is the trainable mask alone

    def record(run, context):  # the parameters at the end of each epoch (one run)
        jax.debug.callback(lambda params: snapshots.append(jax.tree.map(np.array, params)), run.params)
        return run

    method = dataclasses.replace(base, epoch_end=EpochHook(record))
    result = fit(method, [tiny_splits()], [0], MODEL, dataclasses.replace(OPT, weight_decay=0.05),
                 train_cfg(epochs=4))
    assert result.trainer.traces == 1
    leaves = lambda p, stage_one: [v for path, v in jax.tree_util.tree_leaves_with_path(p)
                                   if (str(path[0].key) == "encoders" or str(path[2].key) == "id") == stage_one]
    same = lambda a, b, stage_one: [np.array_equal(x, y) for x, y in zip(leaves(a, stage_one), leaves(b, stage_one))]
    assert all(same(snapshots[0], snapshots[1], False))     # stage 1: CD, synergy, heads, gate frozen
    assert not any(same(snapshots[0], snapshots[1], True))  # ... while the encoders and ID train
    assert all(same(snapshots[1], snapshots[2], True))      # stage 2: encoders and ID frozen
    assert not any(same(snapshots[1], snapshots[2], False))
    assert not any(same(snapshots[2], snapshots[3], True) + same(snapshots[2], snapshots[3], False))  # stage 3
    assert [float(h["train/stage"][0]) for h in result.history] == [1.0, 1.0, 2.0, 3.0]
    assert result.test[0]["acc"] > 0.5  # 3 classes: chance 1/3
