"""MCR: permutation (MIPD) term, game coupling and supervised NT-Xent.

One 4-device subprocess checks that inside a per-device step (``jax.shard_map``, 2 rows per device)
both terms and their gradients are those of the whole batch: the permutations draw donors from every
device and NT-Xent's pairs span the global batch.
"""
import itertools
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmm.losses import mcr

from _devices import GRADIENT_CHECK, run_on_devices

KEY = jax.random.key(0)
W_A = jax.random.normal(jax.random.key(1), (4, 3))
W_V = jax.random.normal(jax.random.key(2), (4, 3))
LATENTS = {"a": jax.random.normal(jax.random.key(3), (8, 4)),
           "v": jax.random.normal(jax.random.key(4), (8, 4))}


def linear_head(z):
    return z["a"] @ W_A + z["v"] @ W_V


def audio_only_head(z):
    return z["a"] @ W_A


def test_coupling_matrix():
    np.testing.assert_allclose(mcr.coupling_matrix(2, "greedy"), [[1, -1], [-1, 1]])
    np.testing.assert_allclose(mcr.coupling_matrix(3, "independent"), np.eye(3))
    np.testing.assert_allclose(mcr.coupling_matrix(2, "collaborative"), np.ones((2, 2)))


@pytest.fixture(scope="module")
def runs():
    """Every MIPD quantity the tests check, from one compiled program."""
    def compute(latents, key):
        ref_audio = audio_only_head(latents)

        def audio_only(z):
            d = mcr.permutation_divergences(audio_only_head, z, ref_audio, key, num_permutations=2)
            return -sum(d.values()).sum(), d

        (_, d), grad = jax.value_and_grad(audio_only, has_aux=True)(latents)
        out = {"d_audio_only": d, "grad_audio_only": grad,
               "masked": mcr.mipd_loss(audio_only_head, latents, ref_audio, key,
                                       num_permutations=2, where=jnp.arange(8) < 4)}
        ref = linear_head(latents) + 0.3
        for c in mcr.COUPLINGS:
            loss = lambda z, r, c=c: mcr.mipd_loss(linear_head, z, r, key, coupling=c,
                                                    num_permutations=2).sum()
            out[c] = (loss(latents, ref),) + jax.grad(loss, argnums=(0, 1))(latents, ref)
        return out
    return jax.jit(compute)(LATENTS, KEY)


def test_permuting_an_ignored_modality_costs_nothing(runs):
    d = runs["d_audio_only"]
    np.testing.assert_allclose(d["v"], 0.0, atol=1e-7)
    assert float(jnp.min(d["a"])) >= 0.0 and float(jnp.sum(d["a"])) > 0.1
    np.testing.assert_allclose(runs["grad_audio_only"]["v"], 0.0, atol=1e-7)
    np.testing.assert_allclose(runs["masked"][:4], -d["a"][:4], rtol=1e-6)
    np.testing.assert_allclose(runs["masked"][4:], 0.0)


def test_coupling_only_changes_gradients(runs):
    greedy, independent, collaborative = (runs[c] for c in mcr.COUPLINGS)
    np.testing.assert_allclose(greedy[0], independent[0], rtol=1e-6)
    np.testing.assert_allclose(greedy[0], collaborative[0], rtol=1e-6)
    # grad_m = g_mm + k g_mn with k = -1, 0, 1: greedy + collaborative = 2 independent.
    for m in "av":
        np.testing.assert_allclose(greedy[1][m] + collaborative[1][m], 2 * independent[1][m],
                                   atol=1e-5)
        assert float(jnp.abs(greedy[1][m] - independent[1][m]).max()) > 1e-4


def test_reference_gradient_follows_the_code(runs):
    np.testing.assert_allclose(runs["greedy"][2], 0.0)   # the code's two terms cancel on f̄
    assert float(jnp.abs(runs["independent"][2]).max()) > 0.0
    np.testing.assert_allclose(runs["independent"][2], runs["collaborative"][2], rtol=1e-6)


def _nt_xent_reference(embeddings, labels, temperature):
    z = np.concatenate(embeddings)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    y = np.tile(labels, len(embeddings))
    s = z @ z.T / temperature
    losses = []
    for i, j in itertools.permutations(range(len(y)), 2):
        if y[i] != y[j]:
            continue
        neg = np.exp(s[i][y != y[i]]).sum()
        losses.append(-np.log(np.exp(s[i, j]) / (np.exp(s[i, j]) + neg)))
    return np.mean(losses) if losses else 0.0


def test_supervised_nt_xent_matches_pair_mean():
    labels = np.array([0, 1, 0, 2, 1, 1])
    emb = [np.asarray(jax.random.normal(jax.random.key(i), (6, 5))) for i in range(2)]
    nt_xent = jax.jit(lambda e, l, w: mcr.supervised_nt_xent(e, l, where=w))
    per_example = nt_xent([jnp.asarray(e) for e in emb], jnp.asarray(labels), jnp.ones(6, bool))
    np.testing.assert_allclose(jnp.mean(per_example), _nt_xent_reference(emb, labels, 0.5),
                               rtol=1e-5)
    keep = np.array([True, True, False, True, True, True])
    masked = nt_xent([jnp.asarray(e) for e in emb], jnp.asarray(labels), jnp.asarray(keep))
    assert float(masked[2]) == 0.0
    expected = _nt_xent_reference([e[keep] for e in emb], labels[keep], 0.5)
    np.testing.assert_allclose(jnp.sum(masked) / keep.sum(), expected, rtol=1e-5)
    value, grad = jax.jit(jax.value_and_grad(lambda e: mcr.supervised_nt_xent(
        [e, e], jnp.zeros(3, int)).sum()))(jnp.ones((3, 2)))
    np.testing.assert_allclose(value, 0.0, atol=1e-6)   # no negatives: nothing to contrast
    assert np.all(np.isfinite(grad))


def test_bad_inputs():
    ref = linear_head(LATENTS)
    with pytest.raises(ValueError, match="`coupling` must be one of 'greedy'"):
        mcr.mipd_loss(linear_head, LATENTS, ref, KEY, coupling="selfish")
    with pytest.raises(ValueError, match="same batch"):
        mcr.mipd_loss(linear_head, LATENTS, ref[:4], KEY)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        mcr.coupling_matrix(1)
    with pytest.raises(ValueError, match="latents of one shape"):
        mcr.supervised_nt_xent([jnp.ones((3, 2)), jnp.ones((3, 4))], jnp.zeros(3, int))
    with pytest.raises(ValueError, match="labels"):
        mcr.supervised_nt_xent([jnp.ones((3, 2))] * 2, jnp.zeros(4, int))


PER_DEVICE = GRADIENT_CHECK + textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from jaxmm.losses import mcr
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32),
            rng.normal(size=(8, 3)).astype(np.float32), rng.integers(0, 2, 8),
            np.array([1, 1, 0, 1, 1, 1, 0, 1], bool))
    w = rng.normal(size=(8, 3)).astype(np.float32)

    def terms(w, a, v, ref, y, valid):
        head = lambda z: jnp.concatenate([z["a"], z["v"]], -1) @ w
        return (mcr.mipd_loss(head, {"a": a, "v": v}, ref, jax.random.key(3), num_permutations=4, where=valid),
                mcr.supervised_nt_xent([a, v], y, where=valid))

    check_per_device(terms, (w, *rows), (P(),) + (P("data"),) * 5, (0, 1, 2, 3))
    print("MCR_PER_DEVICE_OK")
""")


def test_terms_and_gradients_per_device_are_those_of_the_whole_batch():
    assert "MCR_PER_DEVICE_OK" in run_on_devices(PER_DEVICE, 4)
