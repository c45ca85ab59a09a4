"""``jax.jit`` whose compiled programs are shared by every function in the process that lowers to the same one.

Each :class:`~jaxmm.train.trainer.Trainer` jits its own functions, and jax's in-memory cache is
keyed by the Python function, so a second trainer compiles again what the first one did: the
experiments' methods share one model, hence one initialisation and one evaluation program.
:class:`SharedJit` keys compiled programs by the text of their lowered module instead: a program
is compiled once while any :class:`SharedJit` holds it, also when threads ask for it at once (the
later ones wait for the first compilation). jax's persistent compilation cache still applies to
that one compilation.
"""
from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Callable

import jax

_lock = threading.Lock()
_compiling: dict[str, threading.Lock] = {}
_programs: "weakref.WeakValueDictionary[str, jax.stages.Compiled]" = weakref.WeakValueDictionary()


def compile_shared(lowered: jax.stages.Lowered) -> jax.stages.Compiled:
    """``lowered.compile()``, or the program compiled earlier from the same module text and argument and
    result trees."""
    text = f"{lowered.in_tree}\n{lowered.out_tree}\n{lowered.as_text()}"
    key = hashlib.sha256(text.encode()).hexdigest()
    with _lock:
        key_lock = _compiling.setdefault(key, threading.Lock())
    with key_lock:
        compiled = _programs.get(key)
        if compiled is None:
            compiled = _programs[key] = lowered.compile()
    return compiled


class SharedJit:
    """``jax.jit(fn)`` compiled through :func:`compile_shared`, once per argument signature.

    The program is traced on the flat list of the arguments' leaves and returns its results'
    leaves, so two functions that compute the same thing share it even when their pytrees differ
    in empty containers (one method's empty state ``{"masking": {}}``, another's ``{}``). The
    signature is the arguments' tree structure and each leaf's abstract value and sharding. Calls
    flatten the arguments on the host: meant for programs called per epoch or per evaluation
    chunk, not for the train step. Called under a transformation (``jax.eval_shape``, an outer
    ``jax.jit``), it is ``jax.jit(fn)``.
    """

    def __init__(self, fn: Callable):
        self._fn = fn
        self._jit = jax.jit(fn)  # under a transformation (eval_shape, an outer jit) nothing is compiled here
        self._compiled: dict = {}

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._jit(*args)
        signature = (tree, tuple((jax.typeof(x), getattr(x, "sharding", None)) for x in leaves))
        if signature not in self._compiled:
            out_tree = []

            def flat(*leaves):
                out_leaves, out = jax.tree.flatten(self._fn(*jax.tree.unflatten(tree, leaves)))
                out_tree.append(out)
                return out_leaves

            compiled = compile_shared(jax.jit(flat).lower(*leaves))
            self._compiled[signature] = compiled, out_tree[0]
        compiled, out_tree = self._compiled[signature]
        return jax.tree.unflatten(out_tree, compiled(*leaves))
