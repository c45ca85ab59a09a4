"""A finished run, loaded back: its config, data, models and the selected parameters of every run.

:func:`load_run` reads a run folder written by ``jaxmm train`` (:mod:`jaxmm.train.runs`): it rebuilds
the method and the model from ``config.json`` (the method registry, the dataset registry with the
recorded options, the sweep's program of the folder), restores the newest checkpoint and keeps the
parameters the run selected (``train.select=best``: the best ones the loop record holds; ``last``:
the final ones), checking that they are those ``results.json`` reports.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from jaxmm.data.registry import DATASETS, default_cache_dir, load_dataset
from jaxmm.data.types import Batch, DatasetSplits
from jaxmm.methods import get_method
from jaxmm.train.batching import batches, stack_runs
from jaxmm.train.checkpoint import CheckpointError
from jaxmm.train.config import RunConfig, from_dict
from jaxmm.train.loop import evaluate_split, task_of_splits
from jaxmm.train.runs import select_modalities
from jaxmm.train.sharding import replicate
from jaxmm.train.state import TrainState
from jaxmm.train.sweep import programs
from jaxmm.train.trainer import Trainer, resolve_hparams

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class LoadedRun:
    """The runs of one run folder (one per seed and vmapped sweep point), with their selected parameters.

    Attributes:
      path: the run folder.
      config: the program's :class:`~jaxmm.train.config.RunConfig`.
      seeds: the seed of every run.
      hparams: the hyper-parameters of every run.
      splits: the data of every run (as trained on).
      selected_epoch: per run, the epoch whose parameters were restored.
      results: ``results.json`` (``None`` if the run never finished).
      trainer: the compiled functions of the runs.
      state: a :class:`~jaxmm.train.state.TrainState` holding the selected ``params``, ``rest`` and
        ``method_state`` (stacked over runs; the optimiser's fields are ``None``).
    """

    path: str
    config: RunConfig
    seeds: tuple[int, ...]
    hparams: tuple[dict, ...]
    splits: list[DatasetSplits]
    selected_epoch: list[int]
    results: dict | None
    trainer: Trainer
    state: object

    @property
    def num_runs(self) -> int:
        """The number of runs."""
        return len(self.seeds)

    @property
    def task(self):
        """The runs' :class:`~jaxmm.tasks.Task`."""
        return self.trainer.task

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model reads, in order."""
        return self.trainer.modalities

    def model(self, run: int = 0) -> nnx.Module:
        """The eval-mode ``nnx`` module of run ``run`` with its selected parameters."""
        self._check_run(run)
        one = jax.tree.map(lambda x: x[run], (self.state.params, self.state.rest))
        return nnx.merge(self.trainer.eval_def, *one)

    def predict(self, inputs: Mapping[str, np.ndarray], run: int | None = None) -> np.ndarray:
        """The method's evaluation prediction (``forward`` in eval mode) on ``inputs``.

        Args:
          inputs: modality -> ``[N, ...]`` examples.
          run: one run's index; ``None``: every run on the same inputs.

        Returns:
          ``[R, N, K]`` predictions (logits, or regression outputs) of every run, or ``[N, K]`` of ``run``.
        """
        if run is None:
            return self.predict_runs({m: np.broadcast_to(x, (self.num_runs, *np.shape(x))) for m, x in inputs.items()})
        self._check_run(run)
        state = jax.tree.map(lambda x: x[run:run + 1], self.state)  # the None fields stay None
        return self._predict(state, {m: np.asarray(x)[None] for m, x in inputs.items()})[0]

    def predict_runs(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Every run's prediction on its own inputs (modality -> ``[R, N, ...]``): ``[R, N, K]``."""
        return self._predict(self.state, inputs)

    def evaluate(self, split: str = "test") -> list[dict]:
        """Every run's metrics on its ``split`` (``train``, ``val`` or ``test``), as ``results.json`` reports them."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        data = stack_runs([getattr(s, split) for s in self.splits])
        return evaluate_split(self.trainer, self.state, data, getattr(self.splits[0], split),
                         self.config.train.eval_batch_size)

    def _predict(self, state, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = set(self.modalities) - set(inputs)
        if missing:
            raise ValueError(f"inputs lack modalities {sorted(missing)}; give {list(self.modalities)}")
        runs, n = np.shape(next(iter(inputs.values())))[:2]
        batch = Batch(dict(inputs), np.zeros((runs, n)), None, {})
        return self.trainer.predict(state, batch, self.config.train.eval_batch_size)[0]

    def _check_run(self, run: int) -> None:
        if not 0 <= run < self.num_runs:
            raise ValueError(f"run {run} does not exist; this folder holds runs 0..{self.num_runs - 1}")


def load_run(run_dir: str, *, data_dir: str | None = None, cache_dir: str | None = None) -> LoadedRun:
    """Loads a run folder written by ``jaxmm train``, with the parameters each of its runs selected.

    Args:
      run_dir: the run folder (for a sweep with static values: one of its program folders).
      data_dir: the dataset's folder, where it moved since training (default: the recorded one).
      cache_dir: the preprocessing cache of file-backed datasets (default as for ``jaxmm train``).

    Returns:
      A :class:`LoadedRun`.

    Raises:
      FileNotFoundError: no such folder, not a run folder, or a run without checkpoints.
      ValueError: a sweep's parent folder (naming its program folders), or a checkpoint that does
        not hold the parameters ``results.json`` reports.
      CheckpointError: no readable checkpoint.
    """
    run_dir = os.path.abspath(run_dir)
    cfg_path = os.path.join(run_dir, "config.json")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such folder; give the folder of a run written by jaxmm train")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json); give the folder of a run "
                                "written by jaxmm train")
    with open(cfg_path) as f:
        stored = json.load(f)
    stored.pop("provenance", None)
    cfg = from_dict(RunConfig, stored, cfg_path)
    program = _program(cfg, run_dir)
    results = _read_json(os.path.join(run_dir, "results.json"))
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not (os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))):
        raise FileNotFoundError(f"{run_dir} has no checkpoint (trained with train.checkpoint_every=0?); "
                                "retrain it with train.checkpoint_every >= 1 to evaluate it")

    options = {} if data_dir is None else {"data_dir": os.path.abspath(data_dir)}
    if DATASETS[cfg.dataset].data_dir != "unused":
        options.update(cache_dir=cache_dir or cfg.dataset_options.get("cache_dir") or str(default_cache_dir()),
                       progress=False)
    loaded: dict[str, DatasetSplits] = {}
    splits = []
    for seed, opts in zip(program.seeds, program.dataset_options):
        key = repr((seed, sorted(opts.items())))
        if key not in loaded:
            loaded[key] = select_modalities(load_dataset(cfg.dataset, seed, **{**opts, **options}), cfg.modalities)
        splits.append(loaded[key])

    method = get_method(cfg.method, **cfg.method_options)
    first = splits[0]
    n_train = len(first.train)
    # evaluation reads the model and the method state only: no optimiser (its state is not restored)
    trainer = Trainer(method, {m: tuple(x.shape[1:]) for m, x in first.train.inputs.items()},
                      task_of_splits(first, cfg.loss or None), cfg.model, optax.identity())
    hp = resolve_hparams(method, cfg.optimizer, list(program.hparams))
    example = next(batches(stack_runs([first.train]), np.arange(n_train)[None], cfg.train.batch_size))
    abstract = jax.eval_shape(trainer.init, list(program.seeds), hp, jax.tree.map(lambda x: x[0], example))
    best = cfg.train.select == "best"
    parts = (abstract.params, abstract.rest, abstract.method_state)
    runs = len(program.seeds)
    loop, selected_parts = _restore(ckpt_dir, runs, parts, best)
    params, rest, method_state = replicate(selected_parts, trainer.mesh)
    state = TrainState(params, rest, None, None, method_state, None, None, None)
    selected = [int(e) for e in loop["best_epoch"]] if best else [int(loop["epoch"])] * runs
    if results is not None:
        reported = [r["selected_epoch"] for r in results["runs"]]
        if reported != selected:
            raise ValueError(f"the newest checkpoint of {run_dir} holds the parameters of epochs {selected}, but "
                             f"results.json reports epochs {reported} (training stopped between two checkpoints); "
                             "retrain it with train.checkpoint_every=1")
    return LoadedRun(run_dir, cfg, program.seeds, program.hparams, splits, selected, results, trainer, state)


def _restore(ckpt_dir: str, runs: int, parts, best: bool):
    """The selected ``(params, rest, method_state)`` of the newest checkpoint, on the host.

    Only those parts and the loop's epochs are read (an orbax partial restore), so a checkpoint
    restores whatever optimiser, schedule or loop extras the run trained with.

    Returns:
      ``({"epoch", "best_epoch"} of the loop, (params, rest, method_state))``.

    Raises:
      CheckpointError: the checkpoint cannot be read, naming it.
    """
    epoch = max(int(name) for name in os.listdir(ckpt_dir) if name.isdigit())
    keys = ("best_params", "best_rest", "best_method_state") if best else ("params", "rest", "method_state")
    selected = {k: _savable(v) for k, v in zip(keys, parts) if jax.tree.leaves(v)}
    loop = {"epoch": jax.ShapeDtypeStruct((), np.int32), "best_epoch": jax.ShapeDtypeStruct((runs,), np.int32)}
    target = {"loop": {**loop, **selected}} if best else {"loop": loop, "state": selected}
    path = os.path.join(ckpt_dir, str(epoch), "default")
    try:
        restored = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
            item=target, restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target),
            partial_restore=True))
    except Exception as e:  # noqa: BLE001 - orbax reports damage and misfits as any of its errors
        raise CheckpointError(f"the checkpoint of epoch {epoch} in {ckpt_dir} cannot be read as this run's "
                              f"model ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    got = restored["loop"] if best else restored["state"]
    values = tuple(_typed(got[k], v) if k in got else v for k, v in zip(keys, parts))
    return restored["loop"], values


def _savable(abstract):
    """Shapes and dtypes as saved: a typed PRNG key is saved as its raw ``uint32`` key data."""
    return jax.tree.map(lambda s: jax.eval_shape(jax.random.key_data, s) if _is_key(s) else s, abstract)


def _typed(restored, abstract):
    """Restored host arrays with their saved key data wrapped back into typed PRNG keys (nnx creates its
    streams' keys with the default implementation)."""

    def wrap(x, s):
        key = jax.random.wrap_key_data(x)
        if key.dtype != s.dtype:
            raise CheckpointError(f"the model's PRNG keys are {s.dtype}, but the default implementation makes "
                                  f"{key.dtype}; set jax_default_prng_impl as when the run trained")
        return key

    return jax.tree.map(lambda x, s: wrap(x, s) if _is_key(s) else x, restored, abstract)


def _is_key(s) -> bool:
    return jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key)


def _program(cfg: RunConfig, run_dir: str):
    """The sweep program whose runs ``run_dir`` holds (its tag is the folder's name under a static sweep).

    Raises:
      ValueError: ``run_dir`` is a sweep's parent folder, naming its program folders.
    """
    grid = programs(cfg, cfg.sweep)
    if len(grid) == 1 and not grid[0].tag:
        return grid[0]
    name = os.path.basename(run_dir)
    for program in grid:
        if program.tag == name:
            return program
    folders = [p.tag for p in grid if os.path.isdir(os.path.join(run_dir, p.tag))]
    raise ValueError(f"{run_dir} is a sweep of {len(grid)} programs; evaluate one of its program folders: "
                     f"{', '.join(os.path.join(run_dir, f) for f in folders) or '(none trained yet)'}")


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)

