"""MMPareto: Pareto-integrated multimodal and unimodal gradients (Wei & Hu, ICML 2024).

For each shared parameter group (a modality encoder) the gradients of the
loss terms that reach it (multimodal CE and that modality's unimodal CE)
compete. Per step and group, with ``g_t`` the per-term gradients flattened
over the group:

* conflict test: if every pair of term gradients has cosine > 0 the weights
  are uniform (two terms: ``(½, ½)``); otherwise the min-norm point of their
  convex hull (MGDA) gives the weights ``w`` — closed form for two terms
  (``w_1 = (‖g_2‖² − g_1·g_2) / ‖g_1 − g_2‖²``, with the official solver's
  guards, below), Frank–Wolfe for more;
* per parameter tensor ``P`` of the group, magnitude rescaling:
  ``h_P = T · Σ_t w_t g_{t,P}`` and
  ``ĝ_P = γ · h_P · max(1, ‖g_sum,P‖ / ‖h_P‖)`` with ``g_sum`` the plain
  summed gradient (the ``updates`` the transformation receives). With no
  conflict ``ĝ_P = γ · Σ_t g_{t,P}``.

Leaves of any other group (heads) keep the summed gradient.

Official code (GeWu-Lab/MMPareto_ICML2024, ``code/MMPareto.py``): the same,
for two terms per encoder. Its two-vector solver (``min_norm_solvers.py``,
``_min_norm_element_from2``) does not clip: ``w_1 = 0.999`` if
``g_1·g_2 >= ‖g_1‖²``, else ``w_1 = 0.001`` if ``g_1·g_2 >= ‖g_2‖²``, else the
closed form. With a conflict (``cos <= 0``) the guards fire only when a term
gradient is exactly zero — e.g. unimodal heads fed detached features — and
there they matter: the zero term gets 0.999, ``h = 0.002 · g_other`` and the
rescaling restores the norm of ``g_sum``, so the update is ``γ · g_sum``,
where exact (clipped) weights would give ``h = 0`` and no update. The guards
are reproduced here. For more than two terms the uniform-if-no-conflict rule
is taken pairwise (an inference; the paper states it for two) and the
Frank–Wolfe weights are exact: a term with an exactly zero gradient takes all
the weight there, and the group's update is zero.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxmm import kernels
from jaxmm._checks import check_choice
from jaxmm.transforms import _common, _tree

_NAME = "mmpareto"


class MMParetoState(NamedTuple):
    """State of :func:`mmpareto`: the last per-group term weights (for logging).

    Attributes:
      weights: ``{group: [T_group] float32}``.
    """

    weights: dict[str, jax.Array]


def min_norm_weights(gram: jax.Array, *, method: str = "auto", max_iters: int = 250,
                     tol: float = 1e-8) -> jax.Array:
    """Weights of the min-norm point in the convex hull of vectors with Gram matrix ``gram``.

    Solves ``min_{w ∈ simplex} wᵀ G w``.

    Args:
      gram: ``[T, T]`` Gram matrix ``G_ij = ⟨g_i, g_j⟩``.
      method: ``"closed_form"`` (T = 2 only: the official MMPareto/MGDA
        two-vector solver, ``w_1 = 0.999`` if ``G_01 >= G_00``, ``0.001`` if
        ``G_01 >= G_11``, else ``(G_11 − G_01) / (G_00 + G_11 − 2 G_01)``),
        ``"frank_wolfe"`` (exact, with away steps and exact line search, which
        converges linearly on the simplex), or ``"auto"`` (closed form for two
        vectors, Frank–Wolfe otherwise).
      max_iters: Frank–Wolfe iteration cap.
      tol: Frank–Wolfe stops when its duality gap ``⟨Gw, w − e_s⟩`` is below
        ``tol`` times the largest squared norm ``max_i G_ii``.

    Returns:
      ``[T]`` float32 weights on the simplex.
    """
    gram = jnp.asarray(gram, jnp.float32)
    t = gram.shape[0]
    check_choice("method", method, ("auto", "closed_form", "frank_wolfe"), owner=_NAME)
    if t == 1:
        return jnp.ones((1,), jnp.float32)
    if method == "closed_form" or (method == "auto" and t == 2):
        _common.check(t == 2, _NAME, f"the closed form needs exactly 2 vectors, got {t}.")
        g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
        interior = (g12 < g11) & (g12 < g22)  # then g11 + g22 − 2 g12 > 0
        denom = jnp.where(interior, g11 + g22 - 2 * g12, 1.0)
        w1 = (g22 - g12) / denom
        return jnp.where(g12 >= g11, jnp.array([0.999, 0.001], jnp.float32),
                         jnp.where(g12 >= g22, jnp.array([0.001, 0.999], jnp.float32),
                                   jnp.stack([w1, 1.0 - w1])))

    def step(carry):
        w, _, i = carry
        grad = gram @ w
        toward = jnp.argmin(grad)
        away = jnp.argmax(jnp.where(w > 0, grad, -jnp.inf))
        gap = grad @ w - grad[toward]  # Frank–Wolfe duality gap
        use_fw = gap >= grad[away] - grad @ w
        d = jnp.where(use_fw, jax.nn.one_hot(toward, t) - w, w - jax.nn.one_hot(away, t))
        w_away = w[away]
        max_step = jnp.where(use_fw, 1.0, w_away / jnp.maximum(1.0 - w_away, 1e-30))
        curvature = d @ gram @ d
        step_size = jnp.where(curvature > 0, -(d @ grad) / jnp.where(curvature > 0, curvature, 1.0),
                              max_step)
        w = jnp.maximum(w + jnp.clip(step_size, 0.0, max_step) * d, 0.0)
        return w / jnp.sum(w), gap, i + 1

    def cond(carry):
        _, gap, i = carry
        return (gap > tol * scale) & (i < max_iters)

    scale = jnp.max(jnp.diag(gram))
    w0 = jnp.full((t,), 1.0 / t, jnp.float32)
    w, _, _ = jax.lax.while_loop(cond, step, (w0, jnp.asarray(jnp.inf, jnp.float32), 0))
    return w


def pareto_weights(gram: jax.Array, *, conflict_check: bool = True, **solver_kwargs: Any) -> jax.Array:
    """MMPareto term weights: uniform without conflict, min-norm otherwise.

    Args:
      gram: ``[T, T]`` Gram matrix of the term gradients on one group.
      conflict_check: use uniform weights when all pairwise cosines are > 0
        (official); False always solves the min-norm problem.
      **solver_kwargs: passed to :func:`min_norm_weights`.

    Returns:
      ``[T]`` float32 weights summing to 1.
    """
    gram = jnp.asarray(gram, jnp.float32)
    t = gram.shape[0]
    solved = min_norm_weights(gram, **solver_kwargs)
    if not conflict_check:
        return solved
    norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
    cos = gram / jnp.maximum(norms[:, None] * norms[None, :], 1e-30)
    off_diag = ~jnp.eye(t, dtype=bool)
    agree = jnp.all(jnp.where(off_diag, cos > 0, True))
    return jnp.where(agree, jnp.full((t,), 1.0 / t, jnp.float32), solved)


def mmpareto(
    group_terms: Mapping[str, Sequence[int]],
    *,
    labels: _tree.Labels,
    gamma: float = 1.5,
    conflict_check: bool = True,
    max_iters: int = 250,
    tol: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
    """MMPareto gradient integration for shared (encoder) parameter groups.

    Args:
      group_terms: ``{group label: indices of the terms competing on it}``,
        indices into the leading axis of the ``term_grads`` extra arg, e.g.
        with terms ``(multimodal, audio, visual)``:
        ``{"audio": (0, 1), "visual": (0, 2)}``. Groups not listed (heads)
        keep the summed gradient.
      labels: labels spec (pytree of str or callable, as for :func:`optax.partition`).
      gamma: magnitude factor γ (official 1.5; MCR's AVE re-run 0.5).
      conflict_check: see :func:`pareto_weights`.
      max_iters: Frank–Wolfe iterations for groups with more than two terms.
      tol: Frank–Wolfe tolerance.

    Returns:
      A transformation whose ``update`` takes ``term_grads``: the per-term
      gradients stacked on a leading axis (a pytree with the parameters'
      structure, leaf shape ``[T, *param.shape]``), either whole or masked like
      the updates. ``updates`` must be their sum over the terms (plus any
      term not listed in ``group_terms``). An optional ``gamma`` extra arg (a
      traced value, for runs vmapped over γ) replaces the factory's. Other
      extra args are ignored.

    Raises:
      ValueError: for an empty ``group_terms``, a group with no terms or with
        repeated / negative indices, or a non-positive ``gamma``; at init, for
        a group of ``group_terms`` that labels no parameter.
    """
    _common.check(len(group_terms) > 0, _NAME, "`group_terms` is empty.")
    for group, idx in group_terms.items():
        idx = tuple(idx)
        _common.check(len(idx) > 0 and len(set(idx)) == len(idx) and min(idx) >= 0, _NAME,
                      f"`group_terms[{group!r}]` must be distinct non-negative term indices, "
                      f"got {idx!r}.")
    group_terms = {g: tuple(int(i) for i in idx) for g, idx in group_terms.items()}
    _common.check_positive(_NAME, "gamma", gamma)

    def init_fn(params):
        _common.check_groups_present(_NAME, group_terms, _tree.leaf_labels(labels, params),
                                     what="group_terms")
        return MMParetoState({g: jnp.full((len(i),), 1.0 / len(i), jnp.float32)
                              for g, i in group_terms.items()})

    def update_fn(updates, state, params=None, **extra_args):
        del params
        stacked = _common.required(extra_args, "term_grads", _NAME,
                                   "per-term gradients stacked on a leading axis")
        flat, flat_labels = _tree.flatten(updates, updates), _tree.leaf_labels(labels, updates)
        flat_terms = _tree.flatten(stacked, updates)
        out, weights = list(flat), dict(state.weights)
        scale = extra_args.get("gamma", gamma)
        for group, idx in group_terms.items():
            members = [i for i, lab in enumerate(flat_labels) if lab == group]
            if not members:
                continue
            num_terms = flat_terms[members[0]].shape[0]
            _common.check(max(idx) < num_terms, _NAME,
                          f"`group_terms[{group!r}]` = {idx} but `term_grads` has {num_terms} terms.")
            combine = kernels.pareto_update if kernels.enabled("pareto_update") else kernels.pareto_update_reference
            new, weights[group] = combine(
                [flat_terms[i][jnp.asarray(idx)] for i in members], [flat[i] for i in members],
                functools.partial(pareto_weights, conflict_check=conflict_check, max_iters=max_iters, tol=tol), scale)
            for i, leaf in zip(members, new):
                out[i] = leaf
        return _tree.unflatten(updates, out), MMParetoState(weights)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
