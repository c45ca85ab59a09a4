"""One real train step of a method on a tiny model, and per-term reference gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmm.data.types import Batch
from jaxmm.methods import StepContext
from jaxmm.models.multimodal import MLPModelConfig, ModelConfig
from jaxmm.tasks import Task
from jaxmm.models.groups import param_labels
from jaxmm.train.state import TrainState
from jaxmm.train.step import build_eval_step, build_train_step

from ._helpers import make_model

LINEAR_HEAD = MLPModelConfig(encoder_hidden=(4,), fusion_hidden=())


def classification(classes):
    """The classification task with ``classes`` classes (softmax; one sigmoid logit for two)."""
    return Task("classification", "auto", max(classes, 2))


def setup(method, dims=None, classes=3, batch_size=12, seed=0, cfg=LINEAR_HEAD, scale=None):
    """(model, batch, ctx) with random inputs; modality ``m``'s inputs scaled by ``scale[m]``."""
    dims = dims or {"a": 5, "b": 5}
    model = make_model(method, dims, classes, cfg, seed)
    rng = np.random.default_rng(seed)
    scale = scale or {}
    inputs = {m: jnp.asarray(scale.get(m, 1.0) * rng.normal(size=(batch_size, d)), jnp.float32)
              for m, d in dims.items()}
    batch = Batch(inputs=inputs, label=jnp.asarray(rng.integers(0, classes, batch_size)),
                  index=jnp.arange(batch_size), meta={"valid": jnp.ones(batch_size)})
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in method.hparams.items()}
    ctx = StepContext(jax.random.PRNGKey(1), hparams, jnp.asarray(0), method.init_state(model, batch), jnp.asarray(0),
                      tuple(model.modalities), classification(classes))
    return model, batch, ctx


def slices_by_hand(model, batch):
    """``{modality: W_m f_m + b/M}`` of a one-Linear concat head (numpy), ``f_m`` the encoder features."""
    layer = model.fusion_head.layers[0]
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    out, start = {}, 0
    for m in model.modalities:
        f = np.asarray(model.encode_one(m, batch.inputs[m]))
        out[m] = f @ w[start:start + f.shape[1]] + b / len(model.modalities)
        start += f.shape[1]
    return out


def true_class_prob(logits, labels):
    """Softmax probability of the true class (numpy)."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True))[np.arange(len(labels)), np.asarray(labels)]


def term_gradients(method, model, batch, ctx):
    """``{term: gradient of its batch mean}``, each by its own ``jax.grad`` (the plain reference)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def term(p, name):
        return jnp.mean(method.terms(nnx.merge(graphdef, p, rest, copy=True), batch, ctx).losses[name])

    names = method.terms(model, batch, ctx).losses
    grad = jax.jit(jax.grad(term), static_argnums=1)
    return {n: grad(params, n) for n in names}


def transform_of(method, modalities):
    """The method's gradient transformation, or the identity (as the trainer) when it has none."""
    if method.transform is None:
        return optax.with_extra_args_support(optax.identity())
    return method.transform.build(modalities, param_labels)


def per_term(method):
    """Whether the trainer computes per-term gradients for ``method``."""
    return method.transform is not None and method.transform.per_term_grads


def step(method, model, batch, ctx, transform_state=None):
    """One trainer step with plain SGD(lr=1): returns (gradient after the method's transform, metrics, new state).

    ``transform_state`` replaces the transformation's initial state (e.g. a stored snapshot).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = transform_of(method, model.modalities)
    sgd = optax.sgd(1.0)
    state = TrainState(params, rest, tx.init(params) if transform_state is None else transform_state,
                       sgd.init(params), ctx.state, jax.random.PRNGKey(3), jnp.asarray(ctx.step, jnp.int32),
                       jnp.asarray(ctx.epoch, jnp.int32))
    fn = build_train_step(method, graphdef, sgd, tx, tuple(model.modalities), ctx.task, per_term=per_term(method))
    new, metrics = jax.jit(fn)(state, batch, ctx.hparams)
    return jax.tree.map(lambda a, b: a - b, params, new.params), metrics, new


AV = ModelConfig(encoders={"audio": "audio", "visual": "visual"}, fusion_hidden=(), init="xavier")
AV_SHAPES = {"audio": (1, 32, 24), "visual": (3, 2, 32, 32)}  # [1, F, T] and [C, T, H, W]


def trace_step(method, shapes=AV_SHAPES, cfg=AV, batch_size=4, classes=6):
    """Shapes of one train step and one evaluation pass (traced only), by default on the ResNet-18 audio-visual model.

    Returns:
      (train metrics, evaluation ``(prediction, unimodal logits)``, the step's ``Terms.signals``) as
      ``ShapeDtypeStruct`` pytrees.
    """
    task = classification(classes)

    def run(inputs, label):
        model = make_model(method, shapes, classes, cfg, 0)
        modalities = tuple(model.modalities)
        batch = Batch(inputs, label, jnp.arange(batch_size), {"valid": jnp.ones(batch_size)})
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        tx, sgd = transform_of(method, modalities), optax.sgd(0.1)
        method_state = method.init_state(model, batch)
        state = TrainState(params, rest, tx.init(params), sgd.init(params), method_state,
                           jax.random.PRNGKey(0), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        hparams = {k: jnp.asarray(v, jnp.float32) for k, v in method.hparams.items()}
        ctx = StepContext(jax.random.PRNGKey(1), hparams, jnp.zeros((), jnp.int32), method_state,
                          jnp.zeros((), jnp.int32), modalities, task)
        signals = method.terms(nnx.merge(graphdef, params, rest, copy=True), batch, ctx).signals
        _, metrics = build_train_step(method, graphdef, sgd, tx, modalities, task, per_term=per_term(method))(
            state, batch, hparams)
        model.eval()
        eval_def = nnx.split(model, nnx.Param, ...)[0]
        return metrics, build_eval_step(method, eval_def, modalities, task)(params, rest, method_state, inputs), signals

    inputs = {m: jax.ShapeDtypeStruct((batch_size, *s), jnp.float32) for m, s in shapes.items()}
    return jax.eval_shape(run, inputs, jax.ShapeDtypeStruct((batch_size,), jnp.int32))


def assert_traces(method, metric_names, signal_names=()):
    """One step traces on the audio-visual ResNet model (logging ``metric_names``) and with three MLP modalities.

    The evaluation pass gives ``[B, K]`` predictions and unimodal logits for every modality; the
    three-modality step hands ``signal_names`` to the method's transformation.

    Returns:
      the three-modality step's signals (``ShapeDtypeStruct`` pytree).
    """
    for shapes, cfg in ((AV_SHAPES, AV), ({"a": (3,), "b": (4,), "c": (2,)}, LINEAR_HEAD)):
        metrics, (pred, uni), signals = trace_step(method, shapes, cfg)
        assert pred.shape == (4, 6) and {m: u.shape for m, u in uni.items()} == {m: (4, 6) for m in shapes}
    assert set(metric_names) <= set(metrics)
    assert set(signal_names) <= set(signals)
    return signals
