"""``jax.jit`` whose compiled programs are shared by every function in the process that computes the same.

Each :class:`~jaxmm.train.trainer.Trainer` jits its own functions, and jax's in-memory cache is
keyed by the Python function, so a second trainer compiles again what the first one did: the
experiments' methods share one model, hence one initialisation and one evaluation program.
:class:`SharedJit` keys compiled programs by what they compute instead: the traced jaxpr's text
(less its dead equations), the values of its constants and the arguments' types and shardings.
A program is lowered and compiled once while any :class:`SharedJit` holds it or it is among the
:data:`KEEP_RECENT` last used, also when threads ask for it at once (the later ones wait for the
first compilation); jax's persistent compilation cache still applies to that one compilation. A
jaxpr that calls back into Python is never shared: its text (and its lowered module's) shows
every callback alike.
"""
from __future__ import annotations

import collections
import hashlib
import threading
import weakref
from typing import Callable

import jax
import numpy as np

_lock = threading.Lock()
_compiling: dict[str, threading.Lock] = {}
_programs: "weakref.WeakValueDictionary[str, jax.stages.Compiled]" = weakref.WeakValueDictionary()
KEEP_RECENT = 8  # programs kept after their last holder is gone, for the next trainer (one method after another)
_recent: "collections.OrderedDict[str, jax.stages.Compiled]" = collections.OrderedDict()


def _constant_digest(value) -> str:
    """Type and content hash of one constant of a jaxpr."""
    if jax.dtypes.issubdtype(getattr(value, "dtype", None), jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    data = np.asarray(value)
    return f"{data.dtype}{data.shape}:{hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()}"


def compile_shared(traced: jax.stages.Traced, signature, compiler_options: dict | None = None) -> jax.stages.Compiled:
    """``traced.lower().compile(compiler_options)``, or the program compiled earlier from the same jaxpr,
    constants, argument ``signature`` (each argument's type and sharding) and options; a program with
    callbacks compiles anew."""
    text = "\n".join(line for line in str(traced.jaxpr).splitlines()
                     if not line.lstrip().startswith("_:"))  # dead equations (results unused) compile to nothing
    if "callback" in text or "0xXXXX" in text:  # the functions it calls print alike (as in the lowered module)
        return traced.lower().compile(compiler_options)
    text += "".join(f"\n{_constant_digest(c)}" for c in traced.jaxpr.consts)
    options = sorted((compiler_options or {}).items())
    key = hashlib.sha256(f"{signature}\n{options}\n{jax.sharding.get_abstract_mesh()}\n{text}".encode()).hexdigest()
    with _lock:
        key_lock = _compiling.setdefault(key, threading.Lock())
    with key_lock:
        compiled = _programs.get(key)
        if compiled is None:
            compiled = _programs[key] = traced.lower().compile(compiler_options)
    with _lock:
        _recent[key] = compiled
        _recent.move_to_end(key)
        if len(_recent) > KEEP_RECENT:
            _recent.popitem(last=False)
    return compiled


class SharedJit:
    """``jax.jit(fn)`` compiled through :func:`compile_shared`, once per argument signature.

    The program is traced on the flat list of the arguments' leaves and returns its results'
    leaves, so two functions that compute the same thing share it even when their pytrees differ
    in empty containers (one method's empty state ``{"masking": {}}``, another's ``{}``). The
    signature is the arguments' tree structure and each leaf's abstract value and sharding. Calls
    flatten the arguments on the host: meant for programs called per epoch or per evaluation
    chunk, not for the train step. Called under a transformation (``jax.eval_shape``, an outer
    ``jax.jit``), it is ``jax.jit(fn)``. ``compiler_options`` are XLA's options of this program
    (``jax.stages.Lowered.compile``).
    """

    def __init__(self, fn: Callable, compiler_options: dict | None = None):
        self._fn = fn
        self._options = compiler_options
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

            compiled = compile_shared(jax.jit(flat).trace(*leaves), signature[1], self._options)
            self._compiled[signature] = compiled, out_tree[0]
        compiled, out_tree = self._compiled[signature]
        return jax.tree.unflatten(out_tree, compiled(*leaves))
