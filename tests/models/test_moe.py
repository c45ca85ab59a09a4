"""Tests for jaxmm.models.moe and the "moe" fusion: Laplace gates, sparse dispatch, the cross encoder.

Every value is checked against a plain numpy float64 reference that runs every expert on every
token and combines the top-k with the same gates. Sizes are tiny (width 4, 4-5 experts).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmm.models.fusion import MoEFusion
from jaxmm.models.moe import (
    NOISE_EPSILON, SparseMoE, grouped_expert_outputs, laplace_logits, log_space_combine, top_k_gates)

pytestmark = pytest.mark.usefixtures("unoptimised_compile")  # small programs: compiling is their cost

WIDTH, EXPERTS, HIDDEN, BATCH = 4, 4, 8, 3
_erf = np.vectorize(math.erf)


def _np(v):
    return np.asarray(v[...] if isinstance(v, nnx.Variable) else v, np.float64)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x, scale, bias):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * scale + bias


def _np_laplace(x, centers):
    return -np.sqrt(((x[:, None, :] - centers[None]) ** 2).sum(-1))


def _np_top_k(logits, k):
    experts = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    top = np.take_along_axis(logits, experts, -1)
    gates = np.exp(top - top.max(-1, keepdims=True))
    return gates / gates.sum(-1, keepdims=True), experts


def _np_dense_experts(x, w1, b1, w2, b2):
    """``[N, E, O]``: every expert on every token."""
    h = _gelu(np.einsum("nd,edh->neh", x, w1) + b1)
    return np.einsum("neh,eho->neo", h, w2) + b2


def _np_moe(moe, x):
    """Eval-mode SparseMoE on ``[M, N, d]``: dense experts, top-k by the clean Laplace logits."""
    w = [_np(p) for p in (moe.w1, moe.b1, moe.w2, moe.b2)]
    total = 0.0
    for tokens, centers in zip(x, _np(moe.centers)):
        gates, experts = _np_top_k(_np_laplace(tokens, centers), moe.top_k)
        picked = np.take_along_axis(_np_dense_experts(tokens, *w), experts[..., None], 1)
        total = total + np.log((gates[..., None] * np.exp(picked)).sum(1))
    return total


def _np_fusion(fusion, features):
    x = np.stack([features[name] for name, _ in fusion.in_features]).astype(np.float64) * math.sqrt(fusion.width)
    m, b, d = x.shape
    for layer in fusion.layers:
        dw, db, pw, pb = (_np(p) for p in (layer.depth_w, layer.depth_b, layer.point_w, layer.point_b))
        scale, bias = _np(layer.norm_scale), _np(layer.norm_bias)
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
        conv = sum(dw[:, None, None, j] * padded[..., j:j + d] for j in range(3)) + db[:, None, None]
        conv = np.maximum(pw[:, None, None] * conv + pb[:, None, None], 0.0)
        routed = _layer_norm(x + conv, scale[0][:, None], bias[0][:, None])
        x = x + np.moveaxis(_np_moe(layer.moe, routed).reshape(b, m, d), 1, 0)
        h = np.maximum(np.einsum("mbd,mdh->mbh", _layer_norm(x, scale[1][:, None], bias[1][:, None]),
                                 _np(layer.fc1_w)) + _np(layer.fc1_b)[:, None], 0.0)
        x = x + np.einsum("mbh,mhd->mbd", h, _np(layer.fc2_w)) + _np(layer.fc2_b)[:, None]
    return np.concatenate([_layer_norm(t, _np(n.scale), _np(n.bias)) for n, t in zip(fusion.norms, x)], -1)


def _build(make, seed):
    """``make()`` traced abstractly (no compilation), then random parameters and concrete random streams.

    Random parameters everywhere: the routers' centres start at 0, where every expert would tie.
    """
    rng = np.random.default_rng(seed)

    def fill(v):
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        if jnp.issubdtype(v.dtype, jnp.floating):
            return jnp.asarray(0.5 * rng.standard_normal(v.shape), v.dtype)
        return jnp.zeros(v.shape, v.dtype)

    module = nnx.eval_shape(make)
    nnx.update(module, jax.tree.map(fill, nnx.state(module)))
    return module


def test_laplace_gates_equal_the_formula_and_zero_distance_has_a_finite_gradient():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((5, WIDTH))
    x = rng.standard_normal((6, WIDTH))
    x[2] = centers[3]  # zero distance to expert 3

    @jax.jit
    def run(x, centers):
        logits = laplace_logits(x, centers)
        return logits, top_k_gates(logits, 2), jax.grad(lambda x: laplace_logits(x, centers).sum())(x)

    logits, (gates, experts), grad = run(jnp.asarray(x, jnp.float32), jnp.asarray(centers, jnp.float32))
    want = _np_laplace(x, centers)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    want_gates, want_experts = _np_top_k(want, 2)
    np.testing.assert_array_equal(experts, want_experts)
    assert experts[2, 0] == 3
    np.testing.assert_allclose(gates, want_gates, rtol=1e-5)
    np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-6)
    diff = x[:, None, :] - centers[None]
    dist = np.sqrt((diff ** 2).sum(-1, keepdims=True))
    want_grad = -np.where(dist > 0, diff / np.where(dist > 0, dist, 1.0), 0.0).sum(1)  # 0 at zero distance
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-5)


def test_grouped_dispatch_equals_every_expert_on_every_token_with_the_same_gates():
    rng = np.random.default_rng(1)
    n, k, experts_n = 9, 2, 5
    x = rng.standard_normal((n, WIDTH))
    # Unbalanced groups, expert 4 gets no token: top-2 of random logits over experts 0-3 only.
    experts = np.argsort(-rng.standard_normal((n, 4)), -1)[:, :k].astype(np.int32)
    gates = rng.uniform(0.1, 1.0, (n, k))
    gates /= gates.sum(-1, keepdims=True)
    w = [rng.standard_normal(s) for s in ((experts_n, WIDTH, HIDDEN), (experts_n, HIDDEN),
                                          (experts_n, HIDDEN, 3), (experts_n, 3))]

    @jax.jit
    def run(x, experts, gates, *w):
        tiled = [grouped_expert_outputs(x, experts, *w, tile=t) for t in (1, 3)]  # no padding; padding
        out = grouped_expert_outputs(x, experts, *w)                             # default tile: 8
        combined = log_space_combine(out, gates)
        grads = jax.grad(lambda w1: grouped_expert_outputs(x, experts, w1, *w[1:]).sum())(w[0])
        return out, tiled, combined, grads

    f32 = lambda a: jnp.asarray(a, jnp.float32)
    out, tiled, combined, grads = run(f32(x), experts, f32(gates), *map(f32, w))
    dense = _np_dense_experts(x, *w)                                   # [N, E, O]
    picked = np.take_along_axis(dense, experts[..., None], 1)
    for got in (out, *tiled):
        np.testing.assert_allclose(got, picked, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(combined, np.log((gates[..., None] * np.exp(picked)).sum(1)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(grads[4], 0.0)                       # the idle expert learns nothing
    assert (np.abs(np.asarray(grads[:4])).sum(axis=(1, 2)) > 0).all()
    # An expert never sees the other tokens: NaN weights in expert 2 reach only the tokens routed to it.
    poisoned = run(f32(x), experts, f32(gates), f32(w[0]).at[2].set(jnp.nan), *map(f32, w[1:]))[0]
    np.testing.assert_array_equal(np.isnan(poisoned).all(-1), experts == 2)


@pytest.fixture(scope="module")
def moe():
    return _build(lambda: SparseMoE(3, WIDTH, 3 * WIDTH, num_experts=EXPERTS, top_k=2, hidden=HIDDEN,
                                    rngs=nnx.Rngs(0)), seed=2)


def test_sparse_moe_matches_the_dense_reference_and_adds_routing_noise_only_in_training(moe):
    x = np.random.default_rng(3).standard_normal((3, 200, WIDTH))
    moe.eval()
    out, clean = nnx.jit(lambda mod, x: (mod(x), mod.logits(x)))(moe, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(out, _np_moe(moe, x), rtol=1e-4, atol=1e-4)
    routes = {tuple(e) for e in np.asarray(jax.lax.top_k(clean.reshape(-1, EXPERTS), 2)[1])}
    assert len(routes) > 4  # tokens really go to different experts
    moe.train()
    noisy = nnx.jit(lambda mod, x: mod.logits(x))(moe, jnp.asarray(x, jnp.float32))
    moe.eval()
    std = np.log1p(np.exp(np.einsum("mnd,mde->mne", x, _np(moe.noise_weights)))) + NOISE_EPSILON
    z = (np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)) / std
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1.0) < 0.05  # N(0, softplus(x W_noise) + 0.01)


@pytest.mark.parametrize("modalities", [2, 3, 4])
def test_moe_fusion_matches_numpy_for_two_three_and_four_modalities(modalities):
    names = ["text", "audio", "video", "ecg"][:modalities]
    fusion = _build(lambda: MoEFusion({m: WIDTH for m in names}, rngs=nnx.Rngs(0), num_experts=EXPERTS,
                                      expert_hidden=HIDDEN), seed=modalities)
    fusion.eval()
    rng = np.random.default_rng(modalities)
    feats = {m: rng.standard_normal((BATCH, WIDTH)).astype(np.float32) for m in names}
    out = nnx.jit(lambda f, x: f(x))(fusion, {m: jnp.asarray(v) for m, v in feats.items()})
    assert fusion.out_features == modalities * WIDTH and out.shape == (BATCH, modalities * WIDTH)
    np.testing.assert_allclose(out, _np_fusion(fusion, feats), rtol=1e-3, atol=1e-4)


def test_moe_fusion_trains_under_jit_with_finite_gradients_fresh_noise_and_one_trace():
    fusion = _build(lambda: MoEFusion({"a": WIDTH, "b": WIDTH}, rngs=nnx.Rngs(0), num_layers=1,
                                      num_experts=EXPERTS, expert_hidden=HIDDEN), seed=7)
    fusion.train()  # routing noise and expert dropout on
    graphdef, params, rest = nnx.split(fusion, nnx.Param, ...)
    traces = []

    @jax.jit
    def step(params, rest, x):
        traces.append(None)

        def loss(p):
            module = nnx.merge(graphdef, p, rest, copy=True)
            out = module(x)
            return jnp.sum(out ** 2), (out, nnx.state(module, nnx.Not(nnx.Param)))

        (_, (out, rest)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return out, grads, rest

    rng = np.random.default_rng(8)
    x = {m: jnp.asarray(rng.standard_normal((BATCH, WIDTH)), jnp.float32) for m in "ab"}
    zeros = {m: jnp.zeros((BATCH, WIDTH)) for m in "ab"}  # BTW weights of 0 give all-zero embeddings
    outs = []
    for inputs in (x, x, zeros):
        out, grads, rest = step(params, rest, inputs)
        outs.append(np.asarray(out))
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
        moe = grads["layers"][0]["moe"]
        assert np.abs(np.asarray(moe["centers"][...])).sum() > 0
        assert np.abs(np.asarray(moe["noise_weights"][...])).sum() > 0
    assert len(traces) == 1
    assert not np.allclose(outs[0], outs[1])  # fresh routing noise and dropout every step
