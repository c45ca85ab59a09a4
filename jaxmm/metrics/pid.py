"""Partial information decomposition (PID) of ``I(Y; X1, X2)`` for discrete variables.

The BROJA definition (Bertschinger et al. 2014), as used by Liang et al.'s multimodal PID
estimates: over ``Δ_P``, the distributions ``q(x1, x2, y)`` with the pairwise marginals
``p(x1, y)`` and ``p(x2, y)`` of ``p``, find ``q* = argmin I_q(Y; X1, X2)``; then

* synergy ``S = I_p(Y; X1, X2) − I_q*(Y; X1, X2)``,
* redundancy ``R = I(Y; X1) + I(Y; X2) − I_q*(Y; X1, X2)``,
* uniqueness ``U1 = I(Y; X1) − R`` and ``U2 = I(Y; X2) − R``,

so that ``R + U1 + U2 + S = I_p(Y; X1, X2)`` (marginals ``I(Y; X_i)`` are the same for every
``q ∈ Δ_P``).

The solver (:func:`broja_minimizer`) is a log-barrier interior-point method in numpy (float64):
``I_q(Y; X1, X2)`` is convex in ``q``, ``Δ_P`` is a polytope (an affine set intersected with
``q ≥ 0``), so Newton steps on ``t·I_q − Σ log q`` along the null space of the marginal
constraints, for growing ``t``, reach the minimum to a certified gap (``#cells / t``). It starts
from ``p(y) p(x1|y) p(x2|y)``, which lies inside ``Δ_P``. Exact up to that tolerance; dense
linear algebra in the number of cells, so meant for small alphabets (up to a few hundred cells).

Continuous features are first discretised (:func:`discretize`: k-means or quantile bins);
:func:`pid_from_samples` builds the joint histogram.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.linalg import null_space

from jaxmm._checks import check_choice

DISCRETIZATIONS = ("kmeans", "quantile")


class PID(NamedTuple):
    """The four PID atoms (in bits by default); they sum to ``I(Y; X1, X2)``."""

    redundancy: float
    unique1: float
    unique2: float
    synergy: float


def mutual_information(joint: np.ndarray, *, base: float = 2.0) -> float:
    """``I(A; B)`` of a 2-D joint probability table ``p(a, b)``."""
    joint = np.asarray(joint, np.float64)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])) / np.log(base))


def broja_minimizer(p: np.ndarray, *, tol: float = 1e-10, max_newton_steps: int = 100
                    ) -> np.ndarray:
    """``q* = argmin_{q ∈ Δ_P} I_q(Y; X1, X2)`` by a log-barrier interior-point method.

    Args:
      p: ``[n1, n2, ny]`` joint probability table ``p(x1, x2, y)``.
      tol: duality gap in nats at which to stop: ``I_q(Y; X1X2) − min`` is at most about this.
      max_newton_steps: Newton steps per centering at most.

    Returns:
      ``[n1, n2, ny]`` minimiser ``q*``.
    """
    p = _check_distribution(p)
    if not tol > 0:
        raise ValueError(f"tol={tol} must be positive (the duality gap to stop at).")
    p_x1y, p_x2y, p_y = p.sum(1), p.sum(0), p.sum((0, 1))
    start = p_x1y[:, None, :] * p_x2y[None, :, :] / np.where(p_y > 0, p_y, 1.0)
    support = start > 0                      # every other cell is 0 on all of Δ_P
    x1, x2, y = np.nonzero(support)
    constraints = np.concatenate([_indicator(x1 * len(p_y) + y), _indicator(x2 * len(p_y) + y)])
    basis = null_space(constraints)          # directions that keep both pairwise marginals
    q = start[support]
    if basis.shape[1]:
        q = _barrier_minimize(q, basis, x1 * p.shape[1] + x2, np.log(p_y[y]), tol,
                              max_newton_steps)
    out = np.zeros_like(p)
    out[support] = q
    return out


def pid(p: np.ndarray, *, base: float = 2.0, **solver_options) -> PID:
    """BROJA PID of a joint table ``p(x1, x2, y)``.

    Args:
      p: ``[n1, n2, ny]`` non-negative table summing to 1 (normalised here if it does not).
      base: logarithm base: 2 for bits (default), ``e`` for nats.
      **solver_options: passed to :func:`broja_minimizer`.

    Returns:
      The :class:`PID` atoms.
    """
    p = _check_distribution(p)
    q = broja_minimizer(p, **solver_options)
    i_joint = mutual_information(p.reshape(-1, p.shape[2]), base=base)
    i_star = mutual_information(q.reshape(-1, q.shape[2]), base=base)
    i_1, i_2 = mutual_information(p.sum(1), base=base), mutual_information(p.sum(0), base=base)
    redundancy = i_1 + i_2 - i_star
    return PID(redundancy, i_1 - redundancy, i_2 - redundancy, i_joint - i_star)


def joint_histogram(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical ``p(x1, x2, y)`` of three ``[N]`` arrays of non-negative integer codes."""
    x1, x2, y = (np.asarray(v) for v in (x1, x2, y))
    if not x1.shape == x2.shape == y.shape or x1.ndim != 1:
        raise ValueError(f"x1 {x1.shape}, x2 {x2.shape} and y {y.shape} must be [N] arrays of "
                         "the same length; discretise continuous features first.")
    if not all(np.issubdtype(v.dtype, np.integer) and (v.size == 0 or v.min() >= 0)
               for v in (x1, x2, y)):
        raise ValueError("x1, x2 and y must hold non-negative integer codes; use discretize() "
                         "for continuous features.")
    counts = np.zeros((x1.max() + 1, x2.max() + 1, y.max() + 1))
    np.add.at(counts, (x1, x2, y), 1.0)
    return counts / counts.sum()


def pid_from_samples(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, **options) -> PID:
    """BROJA PID of paired discrete samples (plug-in joint histogram, then :func:`pid`)."""
    return pid(joint_histogram(x1, x2, y), **options)


def discretize(features: np.ndarray, num_bins: int, *, method: str = "kmeans", seed: int = 0
               ) -> np.ndarray:
    """Integer codes for continuous features, for a PID over a small alphabet.

    Args:
      features: ``[N]`` or ``[N, D]`` features.
      num_bins: number of codes.
      method: ``"kmeans"`` (k-means++ clusters of the rows, any ``D``; Liang et al.'s choice) or
        ``"quantile"`` (equal-mass bins of a 1-D feature).
      seed: k-means seed.

    Returns:
      ``[N]`` int codes in ``[0, num_bins)``.
    """
    check_choice("method", method, DISCRETIZATIONS)
    features = np.asarray(features, np.float64)
    if num_bins < 2 or features.shape[0] < num_bins:
        raise ValueError(f"need 2 <= num_bins <= N, got num_bins={num_bins} for "
                         f"{features.shape[0]} samples.")
    if method == "quantile":
        if features.ndim != 1 and features.shape[1:] != (1,):
            raise ValueError(f"quantile bins need a 1-D feature, got {features.shape}; use "
                             "method='kmeans' for vectors.")
        values = features.reshape(-1)
        edges = np.quantile(values, np.linspace(0, 1, num_bins + 1)[1:-1])
        return np.searchsorted(edges, values, side="right").astype(np.int64)
    _, codes = kmeans2(features.reshape(len(features), -1), num_bins, minit="++", seed=seed)
    return codes.astype(np.int64)


def _indicator(codes: np.ndarray) -> np.ndarray:
    """One row per distinct code: which cells carry it (a marginal-sum constraint matrix)."""
    return (np.unique(codes)[:, None] == codes[None, :]).astype(np.float64)


def _barrier_minimize(q: np.ndarray, basis: np.ndarray, group: np.ndarray, log_py: np.ndarray,
                      tol: float, max_steps: int) -> np.ndarray:
    """Minimise ``f(q) = Σ q log(q / (q_x p_y))`` over ``q + span(basis)``, ``q > 0``.

    Barrier method: Newton on ``t·f(q) − Σ log q`` for ``t = 1, 10, 100, …`` until the duality
    gap ``m/t`` is below ``tol``. ``f`` is convex with gradient ``log q − log q_x − log p_y`` and
    Hessian ``diag(1/q) − [x_i = x_j]/q_x``.
    """
    same_x = group[:, None] == group[None, :]

    def objective(v, t):
        q_x = np.bincount(group, v)[group]
        return t * np.sum(v * (np.log(v) - np.log(q_x) - log_py)) - np.sum(np.log(v))

    t = 1.0
    while True:
        for _ in range(max_steps):
            q_x = np.bincount(group, q)[group]
            grad = basis.T @ (t * (np.log(q) - np.log(q_x) - log_py) - 1.0 / q)
            hess = t * (np.diag(1.0 / q) - same_x / q_x[:, None]) + np.diag(1.0 / q**2)
            step = -np.linalg.lstsq(basis.T @ hess @ basis, grad, rcond=None)[0]
            decrement = -grad @ step
            # Centred enough: the leftover costs about decrement / t in f; smaller decrements
            # drown in the rounding of t·f.
            if decrement < 1e-6:
                break
            direction, size, value = basis @ step, 1.0, objective(q, t)
            while np.any(q + size * direction <= 0):
                size *= 0.5
            while (size > 1e-10 and objective(q + size * direction, t)
                   > value - 0.25 * size * decrement):
                size *= 0.5
            q = q + size * direction
        if len(q) / t < tol:
            return q
        t *= 10.0


def _check_distribution(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if p.ndim != 3 or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"p must be a non-negative [n1, n2, ny] table with positive mass, got "
                         f"shape {p.shape}.")
    return p / p.sum()
