"""MMPareto: min-norm weights (closed form, Frank–Wolfe), conflict rule, rescaling, contract."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.transforms.mmpareto import min_norm_weights, mmpareto, pareto_weights

from .contract import check_contract, group_labels, random_tree


def _gram(*vectors):
    x = np.stack(vectors)
    return jnp.asarray(x @ x.T, jnp.float32)


def test_two_vector_closed_form_matches_hand_solution():
    g1, g2 = np.array([1.0, 0.0]), np.array([-0.5, 1.0])
    # w1 = (|g2|^2 - g1.g2) / |g1 - g2|^2 = (1.25 + 0.5) / 3.25.
    w = min_norm_weights(_gram(g1, g2))
    np.testing.assert_allclose(w, [1.75 / 3.25, 1.5 / 3.25], rtol=1e-6)
    point = w[0] * g1 + w[1] * g2
    np.testing.assert_allclose(point @ (g1 - g2), 0.0, atol=1e-6)  # optimality on the segment
    np.testing.assert_allclose(min_norm_weights(_gram(g1, g2), method="frank_wolfe"), w, atol=1e-6)


def _official_from2(v1v1, v1v2, v2v2):
    """Float64 reference of the official two-vector solver (MinNormSolver._min_norm_element_from2)."""
    if v1v2 >= v1v1:
        return 0.999
    if v1v2 >= v2v2:
        return 0.001
    return -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))


def _official_update(g_mm, g_u, g_sum, gamma):
    """Float64 reference of code/MMPareto.py for one encoder: conflict test, weights, rescaling.

    ``g_*`` are ``{tensor name: array}``; returns ``(weights, {tensor name: new gradient})``.
    """
    flat = lambda g: np.concatenate([np.ravel(v) for v in g.values()]).astype(np.float64)
    a, b = flat(g_mm), flat(g_u)
    cos = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8)  # F.cosine_similarity
    if cos > 0:
        k = (0.5, 0.5)
    else:
        c = _official_from2(a @ a, a @ b, b @ b)
        k = (c, 1 - c)
    out = {}
    for name in g_mm:
        three_norm = np.linalg.norm(g_sum[name])
        new_grad = 2 * k[0] * g_mm[name] + 2 * k[1] * g_u[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            diff = three_norm / np.linalg.norm(new_grad)
        out[name] = diff * new_grad * gamma if diff > 1 else new_grad * gamma
    return np.array(k), out


def test_closed_form_follows_the_official_guards():
    # g1 . g2 >= |g1|^2: the min-norm point is g1 itself; the official solver says 0.999.
    np.testing.assert_allclose(min_norm_weights(_gram([1.0, 0.0], [3.0, 1.0])), [0.999, 0.001])
    np.testing.assert_allclose(min_norm_weights(_gram([3.0, 1.0], [1.0, 0.0])), [0.001, 0.999])
    np.testing.assert_allclose(min_norm_weights(_gram([1.0, 1.0], [1.0, 1.0])), [0.999, 0.001])
    # A zero vector: the first guard (zero first) or the second (zero second).
    np.testing.assert_allclose(min_norm_weights(_gram([0.0, 0.0], [1.0, 2.0])), [0.999, 0.001])
    np.testing.assert_allclose(min_norm_weights(_gram([1.0, 2.0], [0.0, 0.0])), [0.001, 0.999])
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = rng.standard_normal((2, 5))
        gram = g @ g.T
        expected = _official_from2(gram[0, 0], gram[0, 1], gram[1, 1])
        np.testing.assert_allclose(min_norm_weights(jnp.asarray(gram, jnp.float32))[0], expected,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("zero", ["multimodal", "unimodal", "both"])
def test_exactly_zero_gradient_matches_the_official_solver(zero):
    """Detached unimodal heads (zero unimodal gradient on the encoder) still move it: γ · g_sum."""
    rng = np.random.default_rng(5)
    g = {k: rng.standard_normal(shape) for k, shape in (("k", (3, 2)), ("b", (2,)))}
    z = {k: np.zeros_like(v) for k, v in g.items()}
    g_mm, g_a = {"multimodal": (z, g), "unimodal": (g, z), "both": (z, z)}[zero]
    terms = {"audio": {k: jnp.asarray(np.stack([g_mm[k], g_a[k], z[k]]), jnp.float32) for k in g}}
    updates = jax.tree.map(lambda t: t.sum(0), terms)
    tx = mmpareto({"audio": (0, 1)}, labels=group_labels, gamma=1.5)
    out, state = tx.update(updates, tx.init(updates), term_grads=terms)
    g_sum = {k: g_mm[k] + g_a[k] for k in g}
    weights, expected = _official_update(g_mm, g_a, g_sum, 1.5)
    np.testing.assert_allclose(state.weights["audio"], weights, rtol=1e-6)
    for k in g:
        np.testing.assert_allclose(out["audio"][k], expected[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out["audio"][k], 1.5 * g_sum[k], rtol=1e-5, atol=1e-7)


def test_frank_wolfe_three_vectors_against_grid_search():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3, 4))
    gram = vecs @ vecs.T
    w = np.asarray(min_norm_weights(jnp.asarray(gram, jnp.float32)))
    np.testing.assert_allclose(w.sum(), 1.0, atol=1e-6)
    assert (w >= -1e-7).all()
    grid = np.linspace(0.0, 1.0, 201)
    best = min(np.array([a, b, 1 - a - b]) @ gram @ np.array([a, b, 1 - a - b])
               for a, b in itertools.product(grid, grid) if a + b <= 1.0)
    assert w @ gram @ w <= best + 1e-6


def test_pareto_weights_uniform_without_conflict():
    np.testing.assert_allclose(pareto_weights(_gram([1.0, 0.2], [0.5, 1.0])), [0.5, 0.5])
    np.testing.assert_allclose(pareto_weights(_gram([1.0, 0.2], [0.5, 1.0], [1.0, 1.0])), [1 / 3] * 3,
                               rtol=1e-6)
    np.testing.assert_allclose(
        pareto_weights(_gram([1.0, 0.2], [0.5, 1.0]), conflict_check=False),
        min_norm_weights(_gram([1.0, 0.2], [0.5, 1.0])))


def _case(conflict):
    """Audio encoder with two leaves; terms (multimodal, audio, visual); a head."""
    rng = np.random.default_rng(1)
    g_mm = {"k": rng.normal(size=(3, 2)), "b": rng.normal(size=(2,))}
    g_a = {"k": (-1.0 if conflict else 1.0) * g_mm["k"] + 0.3 * rng.normal(size=(3, 2)),
           "b": (-1.0 if conflict else 1.0) * g_mm["b"] + 0.3 * rng.normal(size=(2,))}
    head = rng.normal(size=(2, 2))
    terms = {"audio": {k: np.stack([g_mm[k], g_a[k], np.zeros_like(g_mm[k])]) for k in g_mm},
             "head": {"w": np.stack([head, 0.5 * head, 0.5 * head])}}
    updates = jax.tree.map(lambda t: jnp.asarray(t.sum(0), jnp.float32), terms)
    return jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), terms), updates, g_mm, g_a


@pytest.mark.parametrize("conflict", [True, False])
def test_update_is_rescaled_pareto_combination(conflict):
    terms, updates, g_mm, g_a = _case(conflict)
    tx = mmpareto({"audio": (0, 1)}, labels=group_labels, gamma=1.5)
    out, state = tx.update(updates, tx.init(updates), term_grads=terms)
    flat = lambda g: np.concatenate([g["k"].ravel(), g["b"].ravel()])
    gram = _gram(flat(g_mm), flat(g_a))
    cos = gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1])
    assert (cos < 0) == conflict
    w, expected = _official_update(g_mm, g_a, {k: g_mm[k] + g_a[k] for k in g_mm}, 1.5)
    np.testing.assert_allclose(state.weights["audio"], w, rtol=1e-5)
    for k in ("k", "b"):
        np.testing.assert_allclose(out["audio"][k], expected[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["head"]["w"], updates["head"]["w"])
    # A traced gamma passed as an extra arg replaces the factory's (the update is linear in γ).
    out2, _ = tx.update(updates, tx.init(updates), term_grads=terms, gamma=jnp.asarray(0.5))
    np.testing.assert_allclose(out2["audio"]["k"], out["audio"]["k"] / 3, rtol=1e-5)


def test_three_terms_use_frank_wolfe():
    terms, updates, _, _ = _case(True)
    terms["audio"] = {k: v.at[2].set(-v[0] - 0.1) for k, v in terms["audio"].items()}
    tx = mmpareto({"audio": (0, 1, 2)}, labels=group_labels)
    _, state = tx.update(updates, tx.init(updates), term_grads=terms)
    x = [np.concatenate([np.asarray(terms["audio"][k][t]).ravel() for k in ("k", "b")])
         for t in range(3)]
    np.testing.assert_allclose(state.weights["audio"], min_norm_weights(_gram(*x), method="frank_wolfe"),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(group_terms={}), "`group_terms` is empty"),
    (dict(group_terms={"audio": (0, 0)}), "distinct non-negative"),
    (dict(group_terms={"audio": ()}), "distinct non-negative"),
    (dict(gamma=0.0), "`gamma` must be positive"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmpareto(**{"group_terms": {"audio": (0, 1)}, "labels": group_labels, **kwargs})


def test_term_index_out_of_range_and_missing_extra_arg():
    terms, updates, _, _ = _case(True)
    tx = mmpareto({"audio": (0, 5)}, labels=group_labels)
    with pytest.raises(ValueError, match="has 3 terms"):
        tx.update(updates, tx.init(updates), term_grads=terms)
    with pytest.raises(ValueError, match="`term_grads="):
        tx.update(updates, tx.init(updates))


def test_contract():
    check_contract(mmpareto, dict(group_terms={"audio": (0, 1), "visual": (0, 2)}, labels=group_labels),
                   lambda i: {"term_grads": random_tree(10 + i, 0.1, (3,))}, inject="gamma")
