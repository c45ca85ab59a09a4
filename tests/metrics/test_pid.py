"""BROJA partial information decomposition and discretisation."""
import itertools

import numpy as np
import pytest

from jaxmm.metrics import pid


def _table(fn):
    p = np.zeros((2, 2, 2))
    for x1, x2 in itertools.product(range(2), repeat=2):
        p[x1, x2, fn(x1, x2)] += 0.25
    return p


def _redundant():
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5
    return p


@pytest.mark.parametrize("table, atom", [(_redundant(), "redundancy"),
                                         (_table(lambda a, b: a), "unique1"),
                                         (_table(lambda a, b: b), "unique2"),
                                         (_table(lambda a, b: a ^ b), "synergy")])
def test_canonical_distributions_recover_the_planted_atom(table, atom):
    result = pid.pid(table)
    for name, value in result._asdict().items():
        np.testing.assert_allclose(value, 1.0 if name == atom else 0.0, atol=1e-6)


def test_and_gate_matches_known_values():
    result = pid.pid(_table(lambda a, b: a & b))
    expected_r = 0.75 * np.log2(4 / 3)   # I(Y; X1) of AND, shared entirely
    np.testing.assert_allclose(result.redundancy, expected_r, atol=1e-6)
    np.testing.assert_allclose([result.unique1, result.unique2], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.synergy, 0.5, atol=1e-6)


def test_random_distribution_is_exact_against_a_grid_search():
    p = np.random.default_rng(0).dirichlet(np.ones(8)).reshape(2, 2, 2)
    q = pid.broja_minimizer(p)
    np.testing.assert_allclose(q.sum(1), p.sum(1), atol=1e-10)   # q ∈ Δ_P
    np.testing.assert_allclose(q.sum(0), p.sum(0), atol=1e-10)
    # Δ_P for 2x2x2 has one free cell per y: q(0, 0 | y) = a_y. Brute force over a fine grid.
    p_y = p.sum((0, 1))
    a1, a2 = p.sum(1) / p_y, p.sum(0) / p_y          # p(x1|y), p(x2|y)
    grids = [np.linspace(max(0, a1[0, y] + a2[0, y] - 1), min(a1[0, y], a2[0, y]), 801)
             for y in range(2)]
    g0, g1 = np.meshgrid(*grids, indexing="ij")
    cells = []
    for y, g in enumerate((g0, g1)):
        cond = np.stack([g, a1[0, y] - g, a2[0, y] - g, 1 - a1[0, y] - a2[0, y] + g])
        cells.append(np.clip(cond, 0, None) * p_y[y])
    q_xy = np.stack(cells, -1)                      # [4, grid, grid, ny]
    q_x = q_xy.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q_xy > 0, q_xy * np.log2(q_xy / (q_x * p_y)), 0.0)
    brute = terms.sum((0, -1)).min()
    ours = pid.mutual_information(q.reshape(4, 2))
    assert ours <= brute + 1e-9 and ours >= brute - 1e-4
    result = pid.pid(p)
    total = pid.mutual_information(p.reshape(4, 2))
    np.testing.assert_allclose(sum(result), total, atol=1e-9)
    assert min(result) > -1e-8


def test_pid_from_samples_and_discretisation():
    rng = np.random.default_rng(1)
    x1, x2 = rng.integers(0, 2, 4000), rng.integers(0, 2, 4000)
    result = pid.pid_from_samples(x1, x2, x1 ^ x2)
    assert abs(result.synergy - 1.0) < 0.01 and abs(result.redundancy) < 0.01
    features = np.concatenate([rng.normal(-5, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    codes = pid.discretize(features, 2)
    assert len(set(codes[:50])) == 1 and len(set(codes[50:])) == 1 and codes[0] != codes[-1]
    bins = pid.discretize(np.arange(100.0), 4, method="quantile")
    np.testing.assert_array_equal(np.bincount(bins), [25, 25, 25, 25])
    np.testing.assert_allclose(pid.pid(_redundant(), base=np.e).redundancy, np.log(2), atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[n1, n2, ny\]"):
        pid.pid(np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        pid.pid(-np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="use discretize"):
        pid.pid_from_samples(np.array([0.5, 1.0]), np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same length"):
        pid.pid_from_samples(np.array([0, 1]), np.array([0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="`method` must be one of 'kmeans', 'quantile'"):
        pid.discretize(np.arange(10.0), 2, method="uniform")
    with pytest.raises(ValueError, match="use method='kmeans'"):
        pid.discretize(np.ones((10, 2)), 2, method="quantile")
    with pytest.raises(ValueError, match="num_bins"):
        pid.discretize(np.arange(3.0), 5)
