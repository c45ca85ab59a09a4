"""Running a :class:`~jaxmm.train.config.RunConfig`: the programs of its sweep, each one vmapped :func:`fit`.

The one path from a config to trained runs, shared by ``jaxmm train`` and the experiments: the
method from the registry (its resolved options recorded), the data from the dataset registry (once
per seed and dataset options), the sweep's programs (:mod:`jaxmm.train.sweep`), and per program a
run folder whose ``config.json`` records the program's config and its provenance. ``cfg.modalities``
keeps only those modalities of the data; ``train.pretrain_epochs`` first pre-trains every encoder
unimodally into ``<run>/pretrain/<m>/`` (:mod:`jaxmm.train.pretrain`).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
from typing import Callable, Mapping

from jaxmm.data.registry import data_folder, load_dataset
from jaxmm.data.types import DatasetSplits
from jaxmm.methods import Method, get_method
from jaxmm.train.config import RunConfig, apply_overrides, to_dict
from jaxmm.train.datacache import DataCache
from jaxmm.train.distributed import is_main_process
from jaxmm.train.loop import FitResult, fit
from jaxmm.train.outputs import RunDir
from jaxmm.train.pretrain import PRETRAIN_DIR, freeze_encoders, pretrain_encoders
from jaxmm.train.rundir import claim
from jaxmm.train.sweep import point_label, programs

MethodBuilder = Callable[[RunConfig, DatasetSplits], Method]


@dataclasses.dataclass
class ProgramResult:
    """One trained program of a run.

    Attributes:
      tag: its static sweep values (``key=value,...``; empty without static sweeps): its sub-folder.
      config: the run's config with those values applied.
      seeds: the seed of every run of the program.
      points: the vmapped sweep point of every run (``{key: value}``; ``{}`` without a sweep).
      fit: what :func:`~jaxmm.train.loop.fit` returned (per-run lists in run order).
      splits: the data of every run (shared objects where runs share their data).
    """

    tag: str
    config: RunConfig
    seeds: tuple[int, ...]
    points: tuple[dict, ...]
    fit: FitResult
    splits: list[DatasetSplits]

    def grid(self) -> dict[str, list[int]]:
        """``{point label: indices of its runs}`` in sweep order (one entry per grid point)."""
        out: dict[str, list[int]] = {}
        for i, point in enumerate(self.points):
            out.setdefault(point_label(point), []).append(i)
        return out


def registry_method(cfg: RunConfig, splits: DatasetSplits) -> Method:
    """The registered method ``cfg.method`` with ``cfg.method_options`` (the default builder)."""
    return get_method(cfg.method, **cfg.method_options)


def provenance(cfg: RunConfig, data_options: Mapping) -> dict:
    """Versions of jaxmm, jax, flax and optax, the git commit of the jaxmm checkout (if any) and the data
    folder actually used."""
    versions = {}
    for package in ("jaxmm", "jax", "flax", "optax"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit, "data_dir": data_folder(cfg.dataset, dict(data_options))}


def run(cfg: RunConfig, run_dir: str | None, *, build: MethodBuilder = registry_method,
        data_options: Mapping | None = None, resume: bool = False, overwrite: bool = False,
        data_cache: DataCache | None = None) -> list[ProgramResult]:
    """Trains every program of ``cfg`` (its seeds × its sweep), one vmapped :func:`fit` each.

    Args:
      cfg: the run. ``cfg.method_options`` is completed in place with the method's defaults (what
        ``config.json`` records).
      run_dir: the run's folder (a sub-folder per program of a static sweep); ``None``: no files.
      build: the method of a program from its config and its first run's splits (default: the registry's).
      data_options: loader options that are not part of the config (``cache_dir``, ``progress``).
      resume, overwrite: as for :func:`~jaxmm.train.loop.fit`, for every program.
      data_cache: datasets and stacked run sets shared with other calls (default: the datasets are
        loaded once per call, and each program stacks its own).

    Returns:
      One :class:`ProgramResult` per program, in sweep order.

    Raises:
      ValueError: a bad sweep value (naming the field), or swept dataset options that change the
        inputs' shapes (those need runs of their own).
      FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is given.
    """
    cfg.method_options = dict(get_method(cfg.method, **cfg.method_options).info.options)
    grid = programs(cfg, cfg.sweep)
    loaded = data_cache or DataCache()

    def load(seed: int, options: dict) -> DatasetSplits:
        options = {**options, **(data_options or {})}
        return loaded.splits(repr((cfg.dataset, seed, sorted(options.items()), cfg.modalities)),
                                 lambda: select_modalities(load_dataset(cfg.dataset, seed, **options), cfg.modalities))

    record = None
    if run_dir is not None:
        record = {**to_dict(cfg), "provenance": provenance(cfg, {**cfg.dataset_options, **(data_options or {})})}
    sweep_root = run_dir is not None and any(p.tag for p in grid)
    if sweep_root:  # the sweep's own folder records the whole sweep; each program has a sub-folder
        claim(run_dir, resume=resume, overwrite=overwrite)
        if not resume:
            RunDir(run_dir).write_json("config.json", record)
    results = []
    for program in grid:
        program_cfg = apply_overrides(dataclasses.replace(cfg), list(program.overrides))
        splits = [load(seed, options) for seed, options in zip(program.seeds, program.dataset_options)]
        _check_same_shapes(splits, program)
        folder = None if run_dir is None else os.path.join(run_dir, program.tag) if program.tag else run_dir
        program_record = {**record, **to_dict(program_cfg)} if record is not None and program.tag else record
        method = build(program_cfg, splits[0])
        encoders = None
        if folder is not None and overwrite and not resume and is_main_process():  # the replaced run's pre-training goes
            shutil.rmtree(os.path.join(folder, PRETRAIN_DIR), ignore_errors=True)
        if program_cfg.train.pretrain_epochs:
            if folder is not None:  # refuse a taken folder before pre-training into it
                claim(folder, resume=resume, overwrite=overwrite)
            encoders = pretrain_encoders(program_cfg, splits, program.seeds, list(program.hparams),
                                         method.model.modalities or splits[0].modalities, folder, resume=resume,
                                         overwrite=overwrite)
            if program_cfg.train.pretrain == "freeze":
                method = freeze_encoders(method, list(encoders))
        result = fit(method, splits, program.seeds, program_cfg.model,
                     program_cfg.optimizer, program_cfg.train, hparams=list(program.hparams), run_dir=folder,
                     resume=resume, overwrite=overwrite, record=program_record, loss=program_cfg.loss or None,
                     init_encoders=encoders, data_cache=data_cache)
        results.append(ProgramResult(program.tag, program_cfg, program.seeds, program.points, result, splits))
    if sweep_root and resume:  # the whole sweep's record, once every program resumed
        RunDir(run_dir).write_json("config.json", record)
    return results


def select_modalities(splits: DatasetSplits, modalities) -> DatasetSplits:
    """``splits`` with only ``modalities`` as inputs, in that order (all of them when empty).

    Raises:
      ValueError: a modality the data lacks.
    """
    if not modalities:
        return splits
    missing = [m for m in modalities if m not in splits.modalities]
    if missing:
        raise ValueError(f"modalities {missing} are not in the data, which has {list(splits.modalities)}; "
                         "fix the modalities field")
    return DatasetSplits(*(dataclasses.replace(getattr(splits, part), inputs={
        m: getattr(splits, part).inputs[m] for m in modalities}) for part in ("train", "val", "test")))


def _check_same_shapes(splits: list[DatasetSplits], program) -> None:
    def shapes(s: DatasetSplits):
        return {m: x.shape[1:] for m, x in s.train.inputs.items()}, s.num_classes

    first = shapes(splits[0])
    for s, point in zip(splits, program.points):
        if shapes(s) != first:
            swept = ", ".join(k for k in point if k.startswith("dataset_options."))
            raise ValueError(f"the swept {swept} changes the inputs' shapes or classes ({shapes(s)} vs {first}), "
                             "so its values cannot share one program; train them as separate runs")
