"""Pytree helpers shared by the gradient transformations.

Every transformation routes leaves to parameter groups with a *labels* spec:
either a pytree of strings with the structure of the parameters, or a callable
``params -> labels pytree`` (the same spec :func:`optax.partition` takes). A
transformation may run inside :func:`optax.partition` / :func:`optax.masked`,
where the leaves it does not own are :class:`optax.MaskedNode` placeholders;
these helpers skip them (their label is ``None``) and flatten the other trees
(parameters, snapshots, extra args) *up to* the updates' structure, so extra
args may be passed either masked or whole.

Norms run in float32; the per-tensor projections of RedReg and MMPareto live beside their
Pallas kernels in :mod:`jaxmm.kernels` (float32 algebra, results in each leaf's own dtype).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

Labels = Any  # a pytree of str with the parameters' structure, or params -> such a pytree


def _is_masked(x: Any) -> bool:
    return isinstance(x, optax.MaskedNode)


def _treedef(tree: Any) -> jax.tree_util.PyTreeDef:
    return jax.tree.structure(tree, is_leaf=_is_masked)


def flatten(tree: Any, like: Any) -> list[Any]:
    """Leaves of ``tree`` taken at the leaf positions of ``like``.

    Args:
      tree: a pytree whose structure has ``like``'s structure as a prefix
        (a :class:`optax.MaskedNode` in ``like`` matches anything).
      like: the reference tree (usually the updates).

    Returns:
      One entry per leaf of ``like`` (masked positions included).
    """
    return _treedef(like).flatten_up_to(tree)


def unflatten(like: Any, leaves: Sequence[Any]) -> Any:
    """Inverse of :func:`flatten` for ``like``'s structure."""
    return _treedef(like).unflatten(list(leaves))


def leaf_labels(labels: Labels, tree: Any) -> list[str | None]:
    """The group label of every leaf of ``tree`` (``None`` for masked leaves).

    Args:
      labels: pytree of strings with ``tree``'s structure, or a callable
        returning one when called on ``tree``.
      tree: parameters or updates, possibly holding :class:`optax.MaskedNode`.

    Returns:
      A list aligned with :func:`flatten` ``(tree, tree)``.
    """
    spec = labels(tree) if callable(labels) else labels
    return [
        None if _is_masked(leaf) else label
        for leaf, label in zip(flatten(tree, tree), flatten(spec, tree))
    ]


def map_labelled(fn: Callable[..., Any], labels: Labels, tree: Any, *others: Any) -> Any:
    """``fn(label, leaf, *other_leaves)`` on every unmasked leaf of ``tree``.

    Args:
      fn: called with the leaf's label, the leaf and the matching leaves of
        ``others``; returns the new leaf.
      labels: the labels spec (see module docstring).
      tree: the tree to map over (its structure is the result's).
      *others: trees with ``tree``'s structure as a prefix.

    Returns:
      A tree with ``tree``'s structure; masked leaves are passed through.
    """
    flat = flatten(tree, tree)
    flat_others = [flatten(other, tree) for other in others]
    out = [
        leaf if label is None else fn(label, leaf, *(o[i] for o in flat_others))
        for i, (label, leaf) in enumerate(zip(leaf_labels(labels, tree), flat))
    ]
    return unflatten(tree, out)


def keep_groups(labels: Labels, tree: Any, groups: Sequence[str]) -> Any:
    """``tree`` with every leaf outside ``groups`` replaced by a :class:`optax.MaskedNode`.

    Used to hold per-group copies (epoch-start snapshots) without storing the
    other groups.
    """
    return map_labelled(
        lambda label, leaf: leaf if label in groups else optax.MaskedNode(), labels, tree
    )


def global_norm(leaves: Sequence[jax.Array]) -> jax.Array:
    """Float32 Euclidean norm of a list of tensors taken together."""
    return optax.tree.norm(optax.tree.cast(list(leaves), jnp.float32)).astype(jnp.float32)


def refresh_on_new_epoch(
    snapshot: Any, last_epoch: jax.Array, params: Any, epoch: Any
) -> tuple[Any, jax.Array, jax.Array]:
    """Replace ``snapshot`` by ``params`` when ``epoch`` differs from ``last_epoch`` (jit-safe).

    Args:
      snapshot: the stored copy (leaves outside its groups are MaskedNodes).
      last_epoch: int32 scalar, the epoch the snapshot belongs to.
      params: current parameters (the values at the start of the first step
        of a new epoch are that epoch's starting point).
      epoch: the current epoch (int or int array).

    Returns:
      ``(snapshot, epoch as int32, is_new_epoch)``.
    """
    epoch = jnp.asarray(epoch, jnp.int32)
    is_new = epoch != last_epoch

    def pick(old, new):
        return old if _is_masked(old) else jnp.where(is_new, new, old).astype(old.dtype)

    new_snapshot = unflatten(snapshot, [
        pick(old, new) for old, new in zip(flatten(snapshot, snapshot), flatten(params, snapshot))
    ])
    return new_snapshot, epoch, is_new


def put_like(new: Any, like: Any) -> Any:
    """``new`` (host or device values) cast to ``like``'s dtypes and placed on its leaves' devices.

    Epoch hooks that replace parts of a train state use it so that the jitted step
    sees the same dtypes and shardings again (no recompilation).
    """
    return jax.tree.map(lambda n, o: jax.device_put(jnp.asarray(n, o.dtype), o.sharding), new, like)
