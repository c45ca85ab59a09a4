"""Sweeps: the cartesian product of config values with the seeds, as few compiled programs as possible.

A sweep maps dotted config fields to lists of values (``RunConfig.sweep``, or ``--sweep
hparams.lam=0.1,1,10``). Values of vmappable fields (``hparams.<name>``, ``optimizer.lr``,
``optimizer.weight_decay``) become per-run hyper-parameters of one vmapped program, and values of
``dataset_options.<name>`` per-run data of it (each run loads its own splits; they must agree in
shapes); every other field (``method_options.mask``, ``model.fusion``, …) needs a program of its
own, one per combination of its values.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, Sequence

from jaxmm.train.config import apply_overrides, parse_value

VMAPPABLE = {"optimizer.lr": "lr", "optimizer.weight_decay": "weight_decay"}
DATA = "dataset_options."


@dataclasses.dataclass(frozen=True)
class Program:
    """One compiled program of a sweep.

    Attributes:
      tag: ``key=value,...`` of its static values (empty without static sweeps): its run folder.
      overrides: ``--set``-style overrides of the static values.
      seeds: the seed of every run (the config's seeds, repeated for every vmapped grid point).
      hparams: the hyper-parameters of every run.
      dataset_options: the dataset options of every run (the config's, with the swept ones applied).
      points: the vmapped grid point of every run (``{key: value}``).
    """

    tag: str
    overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    hparams: tuple[dict, ...]
    dataset_options: tuple[dict, ...]
    points: tuple[dict, ...]


def parse_sweep(item: str) -> tuple[str, list]:
    """``"hparams.lam=0.1,1,10"`` -> ``("hparams.lam", [0.1, 1, 10])`` (commas inside brackets kept).

    Raises:
      ValueError: not ``key=v1,v2,...``.
    """
    if "=" not in item:
        raise ValueError(f"--sweep {item!r} is not of the form key.path=v1,v2,..., e.g. hparams.lam=0.1,1,10")
    key, text = item.split("=", 1)
    values, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    if any(not v.strip() for v in values):
        raise ValueError(f"--sweep {item!r} has an empty value; give values separated by commas")
    return key.strip(), [parse_value(v.strip()) for v in values]


def is_vmappable(key: str) -> bool:
    """Whether a swept field varies per run inside one program."""
    return key.startswith(("hparams.", DATA)) or key in VMAPPABLE


def programs(config, sweep: Mapping[str, Sequence[Any]]) -> list[Program]:
    """The compiled programs of ``config`` (a ``RunConfig``) swept over ``sweep``.

    Every value is checked against its field's type before anything runs.

    Raises:
      ValueError: an empty value list, or a value of the wrong type (naming the field).
    """
    for key, values in sweep.items():
        if not values:
            raise ValueError(f"sweep {key!r} has no values")
        for v in values:  # type-check every value on a copy
            apply_overrides(dataclasses.replace(config), [f"{key}={v!r}"])
    static = [(k, v) for k, v in sweep.items() if not is_vmappable(k)]
    vmapped = [(k, v) for k, v in sweep.items() if is_vmappable(k)]
    grid = [dict(zip([k for k, _ in vmapped], combo)) for combo in itertools.product(*[v for _, v in vmapped])]
    out = []
    for combo in itertools.product(*[v for _, v in static]):
        values = dict(zip([k for k, _ in static], combo))
        overrides = tuple(f"{k}={v!r}" for k, v in values.items())
        program_config = apply_overrides(dataclasses.replace(config), list(overrides))
        runs = [(seed, point) for point in grid for seed in config.seeds]
        out.append(Program(
            tag=",".join(f"{k}={v}" for k, v in values.items()), overrides=overrides,
            seeds=tuple(seed for seed, _ in runs),
            hparams=tuple({**dict(program_config.hparams),
                           **{_hparam(k): float(v) for k, v in point.items() if not k.startswith(DATA)}}
                          for _, point in runs),
            dataset_options=tuple({**program_config.dataset_options,
                                   **{k.removeprefix(DATA): v for k, v in point.items() if k.startswith(DATA)}}
                                  for _, point in runs),
            points=tuple(point for _, point in runs)))
    return out


def _hparam(key: str) -> str:
    return VMAPPABLE.get(key) or key.removeprefix("hparams.")


def point_label(point: Mapping[str, Any]) -> str:
    """``"hparams.lam=0.1, optimizer.lr=0.001"`` (``"-"`` for the single point of an unswept run)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "-"
