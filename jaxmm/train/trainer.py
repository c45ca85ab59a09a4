"""Jitted, vmapped and sharded step functions for a grid of runs of one method."""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxmm._checks import check_choice
from jaxmm.batch_reduce import is_per_device, per_device
from jaxmm.data.types import Batch
from jaxmm.methods.base import Method
from jaxmm.models.groups import param_labels
from jaxmm.models.multimodal import ModelConfig, ModelOutput
from jaxmm.tasks import Task
from jaxmm.train.config import OptimizerConfig
from jaxmm.train.optim import fresh_optimizer_state, init_optimizer, make_optimizer
from jaxmm.train.shared_jit import SharedJit
from jaxmm.train.sharding import make_data_mesh, replicate, shard_batch, to_host
from jaxmm.train.state import (
    ModelFactory, TrainState, check_output, graphdefs, init_state, model_factory)
from jaxmm.train.step import build_eval_step, build_train_step, is_random_key

# XLA's options for the trainer's programs on CPUs: LLVM at -O2 instead of XLA's -O3. The Spurious-XOR grid's
# step programs compile about a quarter faster and run as fast; a value may differ from -O3's in its last bit
# (the grid's results and metrics did not). The initialisation runs once, so it takes -O1: 0.9 s instead of
# 1.4 s for the grid's, the same state bit for bit. tests/train/test_trainer.py checks both. Other backends
# compile with XLA's defaults, and so do CPUs with None here or jax's `jax_disable_most_optimizations` on.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def resolve_hparams(method: Method, opt: OptimizerConfig | optax.GradientTransformation,
                    overrides: Sequence[Mapping[str, float]]) -> dict:
    """Per-run hyper-parameters stacked into ``{name: float32 [R]}``.

    Each run gets the method's defaults, ``lr``/``weight_decay`` from ``opt`` when it is an
    :class:`OptimizerConfig` (a user's optax optimiser carries its own), then its own overrides.

    Raises:
      ValueError: an override names a hyper-parameter the method does not read.
    """
    base = dict(method.hparams)
    if isinstance(opt, OptimizerConfig):
        base.update(lr=opt.lr, weight_decay=opt.weight_decay)
    for o in overrides:
        unknown = set(o) - set(base)
        if unknown:
            raise ValueError(f"method {method.name!r} has no hyper-parameter(s) {sorted(unknown)}; "
                             f"valid: {sorted(base)}")
    return {k: np.asarray([float(o.get(k, v)) for o in overrides], np.float32) for k, v in base.items()}


def per_device_step(step, mesh, name: str = "method"):
    """``step`` (state, batch, hparams) -> (state, metrics) run per device with ``jax.shard_map``.

    Each device gets its rows of the batch (axis 1; axis 0 is runs) and the replicated state; code in
    ``step`` that reduces over examples does so globally through :mod:`jaxmm.batch_reduce`, and the
    gradient of the replicated parameters is summed over devices once, by the autodiff of the
    global loss. On the way out, the model's random streams get their replicated keys back, the
    non-parameter model state and metrics that still differ per device (BatchNorm running averages
    under ``local`` BatchNorm, logs of local means) are averaged over devices, and anything else
    that differs per device is refused: it would silently depend on the device count.

    Raises:
      ValueError: (at trace time) the step's new parameters, optimiser or method state depend on
        a device's own rows.
    """
    def local(state, batch, hparams):
        with per_device("data"):
            new_state, metrics = step(state, batch, hparams)
            rest = jax.tree.map(lambda new, old: old if is_random_key(old) else _device_mean(new),
                                new_state.rest, state.rest)
            metrics = jax.tree.map(_device_mean, metrics)
            for field in ("params", "transform_state", "opt_state", "method_state", "rng", "step", "epoch"):
                leaves = jax.tree_util.tree_leaves_with_path(getattr(new_state, field))
                bad = [jax.tree_util.keystr(p) for p, x in leaves if is_per_device(x)]
                if bad:
                    raise ValueError(f"{name}: under train.parallel='shard_map' its {field} {bad[0]} depends on "
                                     "each device's rows; reduce over the batch with jaxmm.batch_reduce "
                                     "(batch_sum, batch_mean, gather_rows) or use train.parallel='auto'")
        return new_state._replace(rest=rest), metrics

    batch_spec = P(None, "data")
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), batch_spec, P()), out_specs=(P(), P()))


def _in_background(fn: Callable) -> concurrent.futures.Future:
    """``fn()`` run in a daemon thread (an interrupted run does not wait for it); its result or error."""
    future = concurrent.futures.Future()

    def run():
        try:
            future.set_result(fn())
        except BaseException as e:  # re-raised by future.result()
            future.set_exception(e)

    threading.Thread(target=run, daemon=True).start()
    return future


def _device_mean(x):
    """``pmean`` over the data axis of a value that differs per device (floats only); others unchanged."""
    if not is_per_device(x):
        return x
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"a {x.dtype} value of the per-device step differs between devices; "
                         "compute it from global reductions (jaxmm.batch_reduce)")
    return jax.lax.pmean(x, "data")


class Trainer:
    """Compiled functions for ``R`` runs of ``method`` trained side by side.

    Every function takes and returns pytrees with a leading run axis; batches are ``[R, B, ...]``
    sharded over the mesh's ``data`` axis, state is replicated.

    Args:
      method: the method.
      input_shapes: modality -> shape of one example (an int: a vector width).
      task: the task (:class:`~jaxmm.tasks.Task`).
      model: a :class:`ModelConfig` (the built-in classifier), or a factory ``rngs -> nnx.Module``
        following the model protocol (:mod:`jaxmm.train.state`).
      optimizer: an :class:`OptimizerConfig` (per-run learning rate and weight decay, vmappable)
        or any ``optax.GradientTransformation``.
      mesh: device mesh (default: all devices).
      per_term_grads: route the gradient through per-term VJPs (see :func:`build_train_step`).
      steps_per_epoch: optimiser steps per epoch (needed by per-epoch learning-rate schedules).
      labels: ``params -> pytree of group names`` the method's transform routes by (default
        :func:`~jaxmm.models.groups.param_labels`, for the built-in model's layout).
      augment_frames: modalities whose ``uint8 [..., H, W, 3]`` frames the train step crops and
        flips on the device (:mod:`jaxmm.data.augment`); evaluation sees them unchanged.
      parallel: ``"auto"``: one ``jax.jit`` program the compiler partitions over the mesh;
        ``"shard_map"``: the step written per device (:func:`per_device_step`).
      batch_norm: under ``shard_map``, ``"sync"`` (BatchNorm moments reduced over devices: the
        same numbers as ``auto`` and one device) or ``"local"`` (each device normalises its own
        rows, as PyTorch DDP without SyncBatchNorm: less communication, a different model).
    """

    def __init__(self, method: Method, input_shapes: Mapping[str, int | Sequence[int]], task: Task,
                 model: ModelConfig | ModelFactory, optimizer: OptimizerConfig | optax.GradientTransformation,
                 mesh=None, per_term_grads: bool = False, steps_per_epoch: int | None = None,
                 labels: Callable | None = None, augment_frames: Sequence[str] = (), parallel: str = "auto",
                 batch_norm: str = "sync"):
        check_choice("parallel", parallel, ("auto", "shard_map"), owner="Trainer")
        check_choice("batch_norm", batch_norm, ("sync", "local"), owner="Trainer")
        if task.kind not in method.model.tasks:
            raise ValueError(f"method {method.name!r} supports {list(method.model.tasks)} tasks, not {task.kind}; "
                             "choose a method that lists it (jaxmm methods)")
        self.method = method
        self.task = task
        self.input_shapes = {m: (s,) if isinstance(s, int) else tuple(s) for m, s in input_shapes.items()}
        self.mesh = mesh or make_data_mesh()
        if isinstance(optimizer, OptimizerConfig):
            self.optimizer = make_optimizer(optimizer, steps_per_epoch)
            self._init_optimizer = lambda params, hp: init_optimizer(self.optimizer, params, hp["lr"],
                                                                     hp["weight_decay"])
            self._optimizer_hparams = ("lr", "weight_decay")
        elif isinstance(optimizer, optax.GradientTransformation):
            self.optimizer = optimizer
            self._init_optimizer = lambda params, hp: optimizer.init(params)
            self._optimizer_hparams = ()
        else:
            raise TypeError(f"optimizer must be an OptimizerConfig or an optax.GradientTransformation, "
                            f"got {type(optimizer).__name__}")
        self.factory = model_factory(method, model, self.input_shapes, task.num_outputs)
        sync_axis = "data" if parallel == "shard_map" and batch_norm == "sync" else None
        self.train_def, self.eval_def, self._abstract = graphdefs(method, self.factory, task.num_outputs,
                                                                   batch_norm_axis=sync_axis)
        self.modalities = tuple(self._abstract.modalities)
        self.labels = labels or param_labels
        self.transform = (method.transform.build(self.modalities, self.labels) if method.transform
                          else optax.with_extra_args_support(optax.identity()))
        self.traces = 0
        per_term = per_term_grads or (method.transform is not None and method.transform.per_term_grads)
        step = build_train_step(method, self.train_def, self.optimizer, self.transform, self.modalities, task,
                                per_term=per_term, augment_frames=tuple(augment_frames))

        runs_step = jax.vmap(step) if parallel == "auto" else per_device_step(jax.vmap(step), self.mesh, method.name)

        def counted_step(state, batch, hparams):
            self.traces += 1  # runs at trace time only: counts compilations
            return runs_step(state, batch, hparams)

        # (with jax's jax_disable_most_optimizations on, options here would override its switch)
        tuned = self.mesh.devices.flat[0].platform == "cpu" and not jax.config.read("jax_disable_most_optimizations")
        self._options = CPU_COMPILER_OPTIONS if tuned else None
        self._init_options = INIT_COMPILER_OPTIONS if tuned and CPU_COMPILER_OPTIONS else None
        self._step = jax.jit(counted_step, donate_argnums=(0,), compiler_options=self._options)
        self._compiling: concurrent.futures.Future | None = None  # a step compiling ahead (compile_step)
        self._eval_one = build_eval_step(method, self.eval_def, self.modalities, task)
        self._eval = SharedJit(jax.vmap(self._eval_one), self._options)
        self._outputs = SharedJit(jax.vmap(build_eval_step(method, self.eval_def, self.modalities, task, raw=True)),
                                  self._options)

    def init(self, seeds: Sequence[int], hparams: dict, example: Batch) -> TrainState:
        """Initial state of every run (``example``: one run's host batch, for shapes).

        Raises:
          ValueError: the model's output lacks what the method trains (before compilation).
        """
        example = jax.tree.map(jnp.asarray, example)
        self._check_output(example)
        state = SharedJit(self._init_runs(example), self._init_options)(*self._init_args(seeds, hparams))
        return replicate(state, self.mesh)

    def _init_runs(self, example: Batch):
        """``(seeds [R], hparams) -> state of every run``, for inputs shaped like one run's ``example``."""
        return jax.vmap(lambda seed, hp: self._init_one(seed, hp, example))

    def _init_args(self, seeds: Sequence[int], hparams: dict):
        """The seeds and the hyper-parameters the initialisation reads (the optimiser's): the same program
        for every method with the same model and optimiser."""
        return jnp.asarray(seeds, jnp.uint32), {k: hparams[k] for k in self._optimizer_hparams}

    def _init_one(self, seed, hp, example: Batch) -> TrainState:
        return init_state(self.method, self.factory, self.task.num_outputs, self.transform, seed, example,
                          lambda params: self._init_optimizer(params, hp))

    def output_shapes(self, hparams: dict, example: Batch):
        """Shapes of one run's ``(prediction, {modality: unimodal logits})`` on ``example``'s inputs.

        Traced abstractly (nothing is compiled or computed); ``hparams`` are one run's.

        Raises:
          ValueError: the model's output lacks what the method trains.
        """
        example = jax.tree.map(jnp.asarray, example)
        self._check_output(example)

        def outputs(hp):
            state = self._init_one(jnp.uint32(0), hp, example)
            return self._eval_one(state.params, state.rest, state.method_state, example.inputs)

        return jax.eval_shape(outputs, hparams)

    def _check_output(self, example: Batch) -> None:
        graphdef, state = nnx.split(self._abstract)
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, example.inputs)
        check_output(self.method, self._abstract, out)

    def step(self, state: TrainState, batch: Batch, hparams: dict):
        """One optimiser step of every run; ``batch`` is ``[R, B, ...]``, on the host or already sharded."""
        batch, hparams = shard_batch(batch, self.mesh), replicate(hparams, self.mesh)
        if self._compiling is not None:
            compiled = self._compiling.result()  # raises what compiling the step raised
            try:
                return compiled(state, batch, hparams)
            except (TypeError, ValueError):  # other types or shardings, refused before running: jit them
                self._compiling = None
        return self._step(state, batch, hparams)

    def compile_step(self, seeds: Sequence[int], hparams: dict, batch: Batch) -> None:
        """Starts compiling the train step in a background thread, for the state :meth:`init` returns
        and batches like ``batch`` (``[R, B, ...]``, on the host).

        Called before :meth:`init`, the two programs compile at once; :meth:`step` then runs the
        compiled step while the arguments match it (else it compiles through ``jax.jit`` as usual).
        """
        example = jax.tree.map(lambda x: jnp.asarray(x[0]), batch)
        replicated = jax.sharding.NamedSharding(self.mesh, P())
        state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated, weak_type=x.weak_type),
            jax.eval_shape(self._init_runs(example), *self._init_args(seeds, hparams)))
        args = (state, shard_batch(batch, self.mesh), replicate(hparams, self.mesh))
        self._compiling = _in_background(lambda: self._step.lower(*args).compile())

    def reset_optimizer(self, state: TrainState) -> TrainState:
        """Every run's optimiser state as freshly created (:func:`~jaxmm.train.optim.fresh_optimizer_state`)."""
        fresh = jax.vmap(lambda o, p: fresh_optimizer_state(self.optimizer, o, p))(state.opt_state, state.params)
        return state._replace(opt_state=replicate(fresh, self.mesh))

    def predict(self, state: TrainState, data: Batch, chunk: int):
        """Predictions over a whole stacked split ``[R, N, ...]`` in chunks of ``chunk``.

        The chunks are sharded over the mesh; with several processes each process puts its own rows
        on its devices, every process must call this and every one gets the whole result.

        Returns:
          (``[R, N, K]`` predictions, modality -> ``[R, N, K]`` unimodal logits), numpy.
        """
        return self._chunked(self._eval, state, data, chunk)

    def outputs(self, state: TrainState, data: Batch, chunk: int) -> ModelOutput:
        """The eval-mode :class:`ModelOutput` of ``forward`` over a stacked split, numpy."""
        return self._chunked(self._outputs, state, data, chunk)

    def _chunked(self, fn, state: TrainState, data: Batch, chunk: int):
        n = data.label.shape[1]
        devices = self.mesh.shape["data"]
        chunk = max(devices, min(chunk, -(-n // devices) * devices) // devices * devices)
        parts = []
        for start in range(0, n, chunk):
            inputs = {k: v[:, start:start + chunk] for k, v in data.inputs.items()}
            size = next(iter(inputs.values())).shape[1]
            if size < chunk:
                inputs = {k: np.concatenate([v, np.repeat(v[:, :1], chunk - size, axis=1)], axis=1)
                          for k, v in inputs.items()}
            out = fn(state.params, state.rest, state.method_state, shard_batch(inputs, self.mesh))
            parts.append(jax.tree.map(lambda x, size=size: x[:, :size], to_host(out)))
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *parts)
