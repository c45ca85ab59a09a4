"""Shared contract every jaxmm gradient transformation must pass.

``check_contract(factory, kwargs, extra_args)`` runs a transformation on a
small mixed-dtype parameter tree (float32 and bfloat16 leaves; groups
``audio``, ``visual``, ``fusion``, ``head`` and an ``other`` group no method
touches) and checks that it

* ignores unknown extra args (the traced program is identical with them);
* keeps every update leaf's shape and dtype, and the state's structure,
  shapes and dtypes across steps;
* is traced once by ``jax.jit`` over two steps with different extra-arg values;
* runs under ``jax.vmap`` over a leading run axis (``init`` and ``update``, as
  the trainer vmaps its step over seeds / hyper-parameters): each run's result
  equals the transformation applied to that run alone;
* works inside ``optax.MultiSteps(optax.chain(optax.partition(...), ...))``
  (masked leaves; extra args masked or not), optionally with a
  hyper-parameter scheduled by ``optax.inject_hyperparams``.

Everything that executes is jitted (two or three compilations per
transformation) to keep the suite fast on CPU.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

# The contract checks tracing and semantics, not XLA's optimisations: compiling
# without backend optimisation keeps the suite fast on CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

SHAPES = {
    "audio": {"conv": ((3, 3, 2, 4), jnp.float32), "dense": ((4, 8), jnp.bfloat16),
              "bias": ((8,), jnp.bfloat16)},
    "visual": {"conv": ((3, 3, 3, 4), jnp.bfloat16), "dense": ((4, 8), jnp.float32),
               "bias": ((8,), jnp.float32)},
    "fusion": {"kernel": ((16, 3), jnp.float32), "bias": ((3,), jnp.bfloat16)},
    "head": {"kernel": ((8, 3), jnp.bfloat16), "bias": ((3,), jnp.float32)},
    "other": {"w": ((5, 2), jnp.float32)},
}


def group_labels(tree: Any) -> Any:
    """Labels callable: every leaf is labelled with its top-level key."""
    return {group: jax.tree.map(lambda _, g=group: g, sub) for group, sub in tree.items()}


def random_tree(seed: int, scale: float = 1.0, leading: tuple[int, ...] = ()) -> Any:
    """A tree with :data:`SHAPES`' structure and dtypes, normal entries times ``scale`` (numpy RNG)."""
    rng = np.random.default_rng(seed)
    return {group: {name: jnp.asarray(np.asarray(scale * rng.standard_normal(leading + shape), dtype))
                    for name, (shape, dtype) in leaves.items()}
            for group, leaves in SHAPES.items()}


def _assert_same_avals(a: Any, b: Any) -> None:
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes_and_dtypes(a, b)


def assert_close(a: Any, b: Any) -> None:
    """Leaf-wise allclose; bfloat16 leaves get bfloat16 tolerances."""
    def close(x, y):
        low = jnp.bfloat16 in (jnp.asarray(x).dtype, jnp.asarray(y).dtype)
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                   rtol=1e-2 if low else 1e-5, atol=1e-3 if low else 1e-6)

    jax.tree.map(close, a, b)


def _without_other(tree: Any) -> Any:
    return {k: v for k, v in tree.items() if k != "other"}


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _check_vmap(tx: optax.GradientTransformationExtraArgs, step: Callable[..., Any],
                grads: list[Any], params: list[Any], extras: list[Mapping[str, Any]]) -> None:
    """``vmap`` over a leading run axis (init and one update) equals each run on its own.

    Every argument differs between the runs: gradients, parameters and extra
    args (stacked into arrays). ``step`` is the already-jitted single-run update.
    """
    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def runs(g, p, e):
        def one(g, p, e):
            return tx.update(g, tx.init(p), p, **e)
        return jax.vmap(one)(g, p, e)

    upd, state = runs(_stack(grads), _stack(params), _stack(extras))
    for r, (g, p, e) in enumerate(zip(grads, params, extras)):
        expected_upd, expected_state = step(g, tx.init(p), p, e)
        take = lambda tree, r=r: jax.tree.map(lambda x: x[r], tree)
        _assert_same_avals(take(upd), expected_upd)
        assert_close(take(upd), expected_upd)
        assert_close(take(state), expected_state)


def check_contract(factory: Callable[..., optax.GradientTransformationExtraArgs],
                   kwargs: Mapping[str, Any],
                   extra_args: Callable[[int], Mapping[str, Any]],
                   *, inject: str | None = None) -> None:
    """Run the whole contract for ``factory(**kwargs)``.

    Args:
      factory: the transformation factory.
      kwargs: keyword arguments for the factory (``labels`` included).
      extra_args: ``step -> extra args`` for ``update``; steps 0 and 1 must
        differ in value but not in shapes or dtypes.
      inject: name of a float hyper-parameter to schedule through
        ``optax.inject_hyperparams`` (every other factory argument static);
        None skips it.
    """
    chex.clear_trace_counter()
    params = random_tree(0)
    # The "other" group is frozen (zero gradient) so that transformations using a
    # global norm see the same norm with and without it (partition check).
    grads = [dict(random_tree(1 + i, 0.1), other={"w": jnp.asarray(np.zeros((5, 2), np.float32))})
             for i in range(2)]
    extras = [dict(extra_args(i)) for i in range(2)]
    tx = factory(**kwargs)
    state0 = tx.init(params)

    # Unknown extra args are ignored: the traced program does not change.
    def traced(**unknown):
        return str(jax.make_jaxpr(lambda g, s, p, e: tx.update(g, s, p, **e, **unknown))(
            grads[0], state0, params, extras[0]))

    assert traced() == traced(some_unknown_arg=jnp.ones(3), another_unknown="text")

    # One trace for two jitted steps with different extra-arg values; avals kept.
    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @chex.assert_max_traces(n=1)
    def step(g, state, p, extra):
        return tx.update(g, state, p, **extra)

    upd, state1 = step(grads[0], state0, params, extras[0])
    upd1, state2 = step(grads[1], state1, params, extras[1])
    for u, g in ((upd, grads[0]), (upd1, grads[1])):
        _assert_same_avals(u, g)
    _assert_same_avals(state1, state0)
    _assert_same_avals(state2, state0)
    _check_vmap(tx, step, grads, [params, random_tree(7)], extras)

    # Compositions, nested so that one compiled program covers them all:
    # MultiSteps(chain(partition({tx or inject_hyperparams(tx), set_to_zero}), sgd)).
    # Partition masks the "other" group (MaskedNode leaves in ``tx``); extra args
    # are also passed masked when one has the parameters' structure.
    inner = tx
    if inject is not None:
        static = [k for k in inspect.signature(factory).parameters if k != inject]
        inner = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
    to_tx = lambda tree: {k: jax.tree.map(lambda _, k=k: "frozen" if k == "other" else "tx", v)
                          for k, v in tree.items()}
    tree_like = any(jax.tree.structure(e) == jax.tree.structure(params) for e in extras[0].values())
    # MultiSteps emits on its second mini-step: the chain applied to the mean
    # gradient from the initial state (``step`` is already compiled for these avals).
    # Host-side arithmetic (numpy) avoids compiling one small program per leaf.
    mean_grads = jax.tree.map(
        lambda a, b: jnp.asarray(np.asarray((np.asarray(a, np.float32) + np.asarray(b, np.float32)) / 2,
                                            a.dtype)),
        *grads)
    expected = jax.tree.map(lambda u: -0.1 * np.asarray(u, np.float32),
                            step(mean_grads, state0, params, extras[1])[0])
    for mask in ((False, True) if tree_like else (False,)):
        part = optax.partition({"tx": inner, "frozen": optax.set_to_zero()}, to_tx,
                               mask_compatible_extra_args=mask)
        multi = optax.MultiSteps(optax.chain(part, optax.sgd(0.1)), every_k_schedule=2)

        @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
        def composed(g0, g1, p, e0, e1):
            u0, ms = multi.update(g0, multi.init(p), p, **e0)
            return u0, multi.update(g1, ms, p, **e1)[0]

        u0, u1 = composed(grads[0], grads[1], params, extras[0], extras[1])
        _assert_same_avals(u0, grads[0])
        _assert_same_avals(u1, grads[1])
        np.testing.assert_array_equal(np.asarray(u1["other"]["w"]), 0.0)
        assert_close(_without_other(u1), _without_other(expected))
