"""The method interface's gradient transformation, extra args, per-term gradients and epoch hooks."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmm.methods import EpochHook, GradientTransform, Terms, get_method
from jaxmm.train.loop import fit
from jaxmm.models.groups import param_labels
from jaxmm.transforms import mmpareto

from ._tiny import MODEL, OPT, initial_params, tiny_splits, train_cfg


def _freeze_group(group, seen):
    """Zeroes the updates of one parameter group; records the extra args it was called with."""

    def update(updates, state, params=None, **extra):
        seen.update({k: jax.tree.leaves(v)[0].shape for k, v in extra.items()})
        labels = param_labels(updates)
        return jax.tree.map(lambda u, label: u * (label != group), updates, labels), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


def test_transform_sees_extra_args_and_routes_by_group():
    seen = {}
    base = get_method("vanilla")

    def terms(model, batch, ctx):
        return Terms(base.terms(model, batch, ctx).losses, signals={"scores": jnp.ones(2)})

    method = dataclasses.replace(base, terms=terms, transform=GradientTransform(
        lambda modalities, labels: _freeze_group("a", seen), per_term_grads=True))
    splits = [tiny_splits()]
    after = fit(method, splits, [0], MODEL, OPT, train_cfg(epochs=2)).state.params
    init = initial_params(get_method("vanilla"), splits[0], [0])  # same seed: the parameters fit starts from
    kernel = lambda p, m: p["encoders"][m]["layers"][0]["kernel"]
    np.testing.assert_array_equal(kernel(after, "a"), kernel(init, "a"))  # group "a" frozen
    assert not np.allclose(kernel(after, "b"), kernel(init, "b"))
    assert not np.allclose(after["fusion_head"]["layers"][0]["kernel"], init["fusion_head"]["layers"][0]["kernel"])
    assert seen["epoch"] == () and seen["scores"] == (2,)
    assert seen["term_grads"][0] == 2  # two terms: ce, uni_ce


def test_mmpareto_composes_with_the_trainer():
    method = dataclasses.replace(get_method("vanilla"), transform=GradientTransform(
        lambda modalities, labels: mmpareto({m: (0, 1) for m in modalities}, labels=labels), per_term_grads=True))
    r = fit(method, [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=10))
    losses = np.array([h["train/loss"] for h in r.history])
    assert np.isfinite(losses).all() and (losses[-1] < 0.8 * losses[0]).all()
    assert min(t["acc"] for t in r.test) > 0.4  # 3 classes: chance is 1/3


def test_epoch_end_hook_runs_once_per_epoch():
    base = get_method("vanilla")
    method = dataclasses.replace(
        base, init_state=lambda model, batch: {"epochs_seen": jnp.zeros((), jnp.int32)},
        epoch_end=EpochHook(lambda run, context: run._replace(state={"epochs_seen": run.state["epochs_seen"] + 1})))
    r = fit(method, [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=3))
    np.testing.assert_array_equal(r.state.method_state["epochs_seen"], [3, 3])


def test_epoch_end_sees_eval_outputs_over_a_split():
    seen = []

    def hook(run, context):  # one run's view: shapes without the run axis
        out = context.outputs["val"]
        seen.append((context.epoch, context.num_epochs, out.logits.shape, out.features["a"].shape,
                     context.labels["val"].shape, sorted(context.outputs)))
        return run._replace(logs={"mean_logit": out.logits.mean()})

    method = dataclasses.replace(get_method("vanilla"), epoch_end=EpochHook(hook, reads=lambda e, n: ("val",)))
    r = fit(method, [tiny_splits()], [0, 1], MODEL, OPT, train_cfg(epochs=2))
    assert seen == [(0, 2, (16, 3), (16, 8), (16,), ["val"]), (1, 2, (16, 3), (16, 8), (16,), ["val"])]
    assert np.asarray(r.history[-1]["mean_logit"]).shape == (2,)  # the hook's logs, per run


def test_epoch_hook_optimizer_reset_restarts_moments_and_keeps_the_schedule_clock():
    from jaxmm.train.config import OptimizerConfig
    opt = OptimizerConfig("sgd", 0.1, 0.0, schedule="step", step_size=1, gamma=0.5)
    method = dataclasses.replace(get_method("vanilla"), epoch_end=EpochHook(
        lambda run, context: run, reset_optimizer=lambda epoch: epoch == 1))
    r = fit(method, [tiny_splits()], [0], MODEL, opt, train_cfg(epochs=2))
    inner = r.state.opt_state.inner_state
    momentum = jax.tree.leaves(inner[0][1][0].trace)  # chain(decay, sgd(momentum)): the momentum trace
    assert all(float(jnp.abs(m).max()) == 0.0 for m in momentum)  # reset after the last epoch
    schedule_count = inner[1].count  # scale_by_schedule's clock: 3 steps per epoch, 2 epochs
    np.testing.assert_array_equal(schedule_count, [6])


def test_method_forward_replaces_the_evaluation_pass():
    """A method's ``forward`` decides what is evaluated: here the unimodal head of ``a`` alone."""
    from jaxmm.models.multimodal import ModelOutput

    def forward(model, inputs, ctx):
        out = model(inputs)
        return ModelOutput(out.unimodal_logits["a"], out.unimodal_logits, out.features)

    base = fit(get_method("vanilla"), [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=2))
    method = dataclasses.replace(get_method("vanilla"), forward=forward)
    r = fit(method, [tiny_splits()], [0], MODEL, OPT, train_cfg(epochs=2))
    assert r.test[0]["acc"] == r.test[0]["acc/a"] == base.test[0]["acc/a"]
