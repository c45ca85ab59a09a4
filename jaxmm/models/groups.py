"""Parameter groups of the built-in model: which modality, head or fusion block owns a parameter.

Method transformations route by these groups (``optax.partition``-style labels); a user's own
model passes its own labelling function to the trainer instead.
"""
from __future__ import annotations

import jax


def path_keys(path) -> list[str]:
    """The names along a pytree path of parameters (dict keys, attribute names, indices)."""
    return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def param_group(path) -> str:
    """Group of a parameter path: its modality for encoders, ``head`` for unimodal heads, else ``fusion``."""
    keys = path_keys(path)
    if keys[0] == "encoders":
        return keys[1]
    return "head" if keys[0] == "unimodal_heads" else "fusion"


def param_labels(params):
    """The ``labels`` pytree (see :func:`param_group`) that method transformations route by."""
    return jax.tree_util.tree_map_with_path(lambda path, _: param_group(path), params)
