"""Tests for jaxmm.models.sequence: padding rules, invariances, plain-numpy references, FactorCL shape."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.models.encoders import encoder_options, make_encoder
from jaxmm.models.multimodal import ModelConfig, MultimodalClassifier
from jaxmm.models.sequence import factorcl_uni, pool, sinusoidal, split_valid

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost

D, T, B = 3, 7, 4
SMALL = {"transformer": dict(d_model=8, heads=2, layers=1, ff=16),
         "lstm": dict(hidden=4, features=3), "gru": dict(hidden=5)}


class Jitted:
    """A module applied through one ``jax.jit`` over its split state; counts traces."""

    def __init__(self, module):
        self.module, self.traces = module, 0
        graphdef, state = nnx.split(module)

        def apply(state, x):
            self.traces += 1
            return nnx.merge(graphdef, state)(x)

        self.state, self.fn = state, jax.jit(apply)

    def __call__(self, x):
        return self.fn(self.state, jnp.asarray(x, jnp.float32))


_BASE, _ENCODERS = {}, {}


def encoder(kind, padding):
    """A small ``kind`` encoder reading ``[T, D]`` (``D + 1`` channels with ``mask``), jitted, cached.

    The padding rule is a static attribute that no parameter depends on, so one built module per
    kind serves every rule (building is the slow part on a CPU).
    """
    if kind not in _BASE:
        _BASE[kind] = make_encoder(kind, (T, D), options=SMALL[kind], rngs=nnx.Rngs(1))
    if (kind, padding) not in _ENCODERS:
        module = nnx.merge(*nnx.split(_BASE[kind]))
        module.padding = padding
        _ENCODERS[kind, padding] = Jitted(module)
    return _ENCODERS[kind, padding]


def _content(seed, lengths, length=T):
    """Random sequences of ``lengths`` steps padded to ``length``: {rule: [B, length, D (+1 flag)]}."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(len(lengths), length, D)).astype(np.float32)
    left, right = np.zeros_like(values), np.zeros_like(values)
    masked = np.concatenate([rng.normal(size=values.shape), np.zeros(values.shape[:2] + (1,))], -1).astype(np.float32)
    for i, n in enumerate(lengths):
        left[i, length - n:] = values[i, :n]
        right[i, :n] = values[i, :n]
        masked[i, :n, :D], masked[i, :n, D] = values[i, :n], 1.0
    return {"left": left, "right": right, "mask": masked}


def test_split_valid_follows_each_rule():
    x = np.zeros((1, 6, 2), np.float32)
    x[0, 2, 0], x[0, 4, 1] = 1.0, -2.0  # content at steps 2 and 4; step 3 is an interior all-zero step
    for padding, expected in [("left", [0, 0, 1, 1, 1, 1]), ("right", [1, 1, 1, 1, 1, 0]), ("none", [1] * 6)]:
        features, valid = split_valid(jnp.asarray(x), padding)
        assert valid.tolist() == [[bool(v) for v in expected]] and features.shape == x.shape
    flagged = np.concatenate([x, np.array([[[0], [1], [1], [0], [1], [0]]], np.float32)], -1)
    features, valid = split_valid(jnp.asarray(flagged), "mask")
    assert valid.tolist() == [[False, True, True, False, True, False]]
    np.testing.assert_array_equal(features, x)
    with pytest.raises(ValueError, match="`padding` must be one of"):
        split_valid(jnp.asarray(x), "lft")


@pytest.mark.parametrize("kind", ["transformer", "lstm", "gru"])
@pytest.mark.parametrize("padding", ["left", "right", "mask"])
def test_extra_padding_and_padded_values_do_not_change_the_output(kind, padding):
    lengths = [1, 3, 5, 4]
    short = _content(0, lengths, length=5)[padding]
    extra = np.zeros((B, T, short.shape[-1]), np.float32)  # the same content with two more padded steps
    if padding == "left":
        extra[:, T - 5:] = short
    else:
        extra[:, :5] = short
    run = encoder(kind, padding)
    reference = np.asarray(run(extra))
    np.testing.assert_allclose(run(short), reference, rtol=1e-5, atol=1e-6)
    traces = run.traces
    if padding == "mask":  # padded steps (flag 0) hold arbitrary values, also before and inside the content
        rng = np.random.default_rng(1)
        noisy = extra.copy()
        noisy[..., :D] = np.where(extra[..., D:] > 0, extra[..., :D], rng.normal(size=extra[..., :D].shape))
        pad = np.concatenate([rng.normal(size=(B, 1, D)), np.zeros((B, 1, 1))], -1).astype(np.float32)
        gap = np.concatenate([pad, noisy[:, :1], -pad, noisy[:, 1:5]], axis=1)  # padded steps before and inside
        np.testing.assert_allclose(run(noisy), reference, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(run(gap), reference, rtol=1e-5, atol=1e-6)
    run(extra)
    assert run.traces == traces  # one compile per input shape
    assert np.min(np.abs(reference[0] - reference[1])) > 0  # a constant encoder would not pass


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_rnn(kind, module, x, lengths):
    """Plain float64 loop over each example's valid (last ``n``, left padding) steps."""
    p = {k: np.asarray(getattr(module, k)[...], np.float64) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    hidden = module.hidden
    out = []
    for i, n in enumerate(lengths):
        h, c = np.zeros(hidden), np.zeros(hidden)
        for xt in np.asarray(x[i, x.shape[1] - n:], np.float64):
            gx, gh = xt @ p["w_ih"] + p["b_ih"], h @ p["w_hh"] + p["b_hh"]
            if kind == "lstm":
                ig, fg, gg, og = np.split(gx + gh, 4)
                c = _sigmoid(fg) * c + _sigmoid(ig) * np.tanh(gg)
                h = _sigmoid(og) * np.tanh(c)
            else:
                (xr, xz, xn), (hr, hz, hn) = np.split(gx, 3), np.split(gh, 3)
                r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
                h = (1 - z) * np.tanh(xn + r * hn) + z * h
        out.append(h)
    out = np.stack(out)
    if module.head is not None:
        out = out @ np.asarray(module.head.kernel[...], np.float64) + np.asarray(module.head.bias[...], np.float64)
    return out


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_last_state_equals_a_plain_float64_loop(kind):
    lengths = [1, 3, 7, 5]
    x = _content(2, lengths)["left"]
    run = encoder(kind, "left")
    np.testing.assert_allclose(run(x), _numpy_rnn(kind, run.module, x, lengths), rtol=1e-5, atol=1e-6)


def _layer_norm(x, scale, bias):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * scale + bias


def _numpy_transformer_tokens(module, tokens):
    """One post-norm layer over the ``[n, D]`` valid tokens of one example, float64."""
    f = lambda lin: (np.asarray(lin.kernel[...], np.float64), np.asarray(lin.bias[...], np.float64))
    we, be = f(module.embed)
    h = tokens @ we + be + np.asarray(sinusoidal(jnp.arange(len(tokens)), module.d_model), np.float64)
    layer = module.layers[0]
    att = layer.attention
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = map(f, (att.query, att.key, att.value, att.out))
    heads, width = att.heads, module.d_model
    split = lambda y: y.reshape(len(tokens), heads, width // heads).transpose(1, 0, 2)
    q, k, v = split(h @ wq + bq), split(h @ wk + bk), split(h @ wv + bv)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(width // heads)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    attended = (a @ v).transpose(1, 0, 2).reshape(len(tokens), width) @ wo + bo
    norm = lambda ln: (np.asarray(ln.scale[...], np.float64), np.asarray(ln.bias[...], np.float64))
    h = _layer_norm(h + attended, *norm(layer.norm1))
    (w1, b1), (w2, b2) = f(layer.ff1), f(layer.ff2)
    return _layer_norm(h + np.maximum(h @ w1 + b1, 0) @ w2 + b2, *norm(layer.norm2))


def test_one_layer_transformer_equals_a_numpy_reference():
    lengths = [1, 3, 7, 5]
    x = _content(3, lengths)["left"]
    run = encoder("transformer", "left")  # masked-mean pooling
    pooled = np.asarray(run(x))
    for i, n in enumerate(lengths):
        expected = _numpy_transformer_tokens(run.module, np.asarray(x[i, T - n:], np.float64))
        np.testing.assert_allclose(pooled[i], expected.mean(0), rtol=1e-4, atol=1e-5)


def test_pool_takes_the_masked_mean_or_the_first_or_last_valid_token():
    rng = np.random.default_rng(4)
    tokens = rng.normal(size=(3, 5, 2)).astype(np.float32)
    valid = np.array([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    expected = {"mean": [tokens[0, [1, 3, 4]].mean(0), tokens[1, 0], np.zeros(2)],
                "first": [tokens[0, 1], tokens[1, 0], np.zeros(2)],
                "last": [tokens[0, 4], tokens[1, 0], np.zeros(2)]}
    for pooling, rows in expected.items():
        np.testing.assert_allclose(pool(jnp.asarray(tokens), jnp.asarray(valid), pooling), np.stack(rows), rtol=1e-6)


@pytest.mark.parametrize("kind", ["transformer", "lstm", "gru"])
def test_all_padding_gives_a_finite_output(kind):
    run = encoder(kind, "mask")
    x = np.random.default_rng(5).normal(size=(B, T, D + 1)).astype(np.float32)
    x[..., D] = 0.0  # every step padded; the features hold arbitrary values
    out = np.asarray(run(x))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, run(np.zeros_like(x)), atol=1e-6)  # padded values never leak in
    if kind == "transformer":  # every attention key masked: the gradient must stay finite too
        graphdef, params, rest = nnx.split(run.module, nnx.Param, ...)
        loss = lambda params: jnp.sum(nnx.merge(graphdef, params, rest)(jnp.asarray(x)) ** 2)
        grads = jax.jit(jax.grad(loss))(params)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def _count(module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("in_features", [20, 300])  # MOSI video / text
def test_factorcl_uni_parameter_count_matches_the_official_layers(in_features):
    # SynIB src/synib/mydatasets/Factor_CL_Datasets/MultiBench/unimodals/common_models.py, class Transformer:
    # Conv1d(n_features, dim, kernel_size=1, bias=False) then nn.TransformerEncoder of 5
    # nn.TransformerEncoderLayer(d_model=dim, nhead=5) (dim_feedforward 2048); FactorCL_Uni's pred_fc is
    # the unimodal head, outside the encoder. MOSI config: hidden_size 40.
    d, ff = 40, 2048
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d) + 2 * (2 * d)
    module = nnx.eval_shape(lambda: factorcl_uni(in_features, 50, rngs=nnx.Rngs(0)))
    assert _count(module) == in_features * d + 5 * per_layer
    assert module.out_features == 40 and module.pooling == "last" and module.positions == "none"


def test_multimodal_classifier_with_sequence_encoders_and_projection():
    shapes = {"text": (T, 5), "audio": (6, 3 + 1)}  # audio: 3 features and a validity flag
    cfg = ModelConfig(encoders={"text": "transformer", "audio": "lstm"},
                      encoder_options={"text": SMALL["transformer"],
                                       "audio": {"hidden": 16, "features": 64, "padding": "mask"}})
    model = MultimodalClassifier(shapes, 3, cfg, rngs=nnx.Rngs(0))
    run = Jitted(model)
    rng = np.random.default_rng(6)
    for _ in range(2):
        out = run.fn(run.state, {m: jnp.asarray(rng.normal(size=(B, *s)), jnp.float32) for m, s in shapes.items()})
    assert run.traces == 1
    assert out.logits.shape == (B, 3) and {m: f.shape for m, f in out.features.items()} == {
        "text": (B, 8), "audio": (B, 64)}
    assert model.encoders["audio"].w_ih.shape == (3, 4 * 16)  # the flag channel is not a feature
    p = 6
    projected = nnx.eval_shape(lambda: MultimodalClassifier(
        shapes, 3, ModelConfig(**{**cfg.__dict__, "projection": p}), rngs=nnx.Rngs(0)))
    for m, width in model.feature_widths.items():
        assert _count(projected.encoders[m]) - _count(model.encoders[m]) == width * p + p + p * p + p
        assert projected.feature_widths[m] == p


def test_bfloat16_computes_in_bf16_with_float32_params():
    module = nnx.eval_shape(lambda: make_encoder("lstm", (T, D), dtype=jnp.bfloat16, options={"features": 4},
                                                 rngs=nnx.Rngs(0)))
    assert {p.dtype for p in jax.tree.leaves(nnx.state(module, nnx.Param))} == {jnp.dtype(jnp.float32)}
    graphdef, state = nnx.split(module)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, jax.ShapeDtypeStruct((B, T, D), jnp.float32))
    assert out.dtype == jnp.bfloat16 and out.shape == (B, 4)


def test_options_and_shapes_are_checked():
    assert encoder_options("lstm") == {"hidden": 16, "features": None, "dropout": 0.0, "padding": "left"}
    with pytest.raises(ValueError, match=r"no option\(s\) \['hiden'\]; valid options: \['dropout', 'features'"):
        make_encoder("lstm", (T, D), options={"hiden": 4}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"reads \[T, D\] sequences"):
        make_encoder("transformer", (T,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs feature channels before the flag"):
        make_encoder("gru", (T, 1), options={"padding": "mask"}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by the number of heads"):
        make_encoder("transformer", (T, D), options={"d_model": 6, "heads": 4}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"encoder_options\['text'\]: encoder kind 'mlp' has no option"):
        ModelConfig(encoder_options={"text": {"padding": "left"}})
    with pytest.raises(ValueError, match="must map modality names to dicts"):
        ModelConfig(encoders={"text": "lstm"}, encoder_options={"text": "left"})
    with pytest.raises(ValueError, match="projection must be an int >= 0"):
        ModelConfig(projection=-1)
