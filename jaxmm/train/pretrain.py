"""Unimodal pre-training: each modality's encoder trained alone, then the fused model started from them.

SynIB's MultiBench protocol and MCR pre-train every encoder unimodally before training the fused
model. :func:`pretrain_encoders` trains the registered ``unimodal`` method once per modality with the
run's model config, optimiser, seeds and per-run learning rate / weight decay for
``train.pretrain_epochs`` epochs, each into its own run folder ``<run>/pretrain/<m>/`` (its own
``config.json``, ``metrics.jsonl``, ``results.json`` and checkpoints). On ``--resume`` a pre-training
that its folder already holds is continued, or reused as it is when finished; one recorded with other
settings is refused. :func:`load_encoders` copies run ``i``'s pre-trained ``params.encoders[m]`` (and
the floating-point state beside them, e.g. BatchNorm statistics) into run ``i`` of the fused
model; :func:`freeze_encoders` adds them to the method's ``trainable`` mask (``train.pretrain=freeze``),
so they stay bit-identical while the rest trains. BatchNorm running statistics of a frozen encoder
keep following the batches (train mode), as they do in PyTorch unless the module is put in eval mode.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxmm.data.types import DatasetSplits
from jaxmm.methods import Method, get_method
from jaxmm.train.config import RunConfig, differences, to_dict
from jaxmm.train.sharding import replicate

PRETRAIN_DIR = "pretrain"
OPTIMIZER_HPARAMS = ("lr", "weight_decay")
IGNORED_ON_REUSE = ("name", "out_dir", "train.progress", "train.tensorboard", "train.wandb_project",
                    "train.eval_batch_size", "train.checkpoint_every", "train.patience", "provenance")
"""Fields a resumed run may change (how it is shown and stored) without refusing its pre-training."""


@dataclasses.dataclass
class Pretrained:
    """One modality's pre-trained encoder, stacked over the runs.

    Attributes:
      params: ``params.encoders[m]`` of every run (leading run axis).
      rest: the non-parameter state under ``encoders[m]`` (BatchNorm statistics, PRNG streams).
      test: per-run test metrics of the unimodal model (its ``results.json``).
    """

    params: object
    rest: object
    test: list[dict]


def pretrain_config(cfg: RunConfig, modality: str) -> RunConfig:
    """The config of ``modality``'s pre-training: the ``unimodal`` method on the same model, optimiser,
    data and seeds, for ``train.pretrain_epochs`` epochs (sweeps kept only for the optimiser's rates)."""
    train = dataclasses.replace(cfg.train, epochs=cfg.train.pretrain_epochs, pretrain_epochs=0,
                                unimodal_reference={})
    sweep = {k: v for k, v in cfg.sweep.items() if k in ("optimizer.lr", "optimizer.weight_decay")}
    return dataclasses.replace(cfg, name=f"{cfg.name}-pretrain-{modality}", method="unimodal",
                               method_options={"modality": modality}, hparams={}, sweep=sweep, train=train)


def _check_reusable(folder: str, record: dict) -> None:
    """Refuses to continue a pre-training recorded with other settings."""
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        stored = json.load(f)
    changed = [d for d in differences(stored, record) if not d.startswith(IGNORED_ON_REUSE)]
    if changed:
        raise ValueError(f"--resume: the pre-training in {folder} was recorded with other settings "
                         f"({'; '.join(changed)}); resume with the run's own settings or start over with --overwrite")


def pretrain_encoders(cfg: RunConfig, splits: Sequence[DatasetSplits], seeds: Sequence[int],
                      hparams: Sequence[Mapping[str, float]], modalities: Sequence[str], run_dir: str | None, *,
                      resume: bool = False, overwrite: bool = False) -> dict[str, Pretrained]:
    """Trains the ``unimodal`` method on each of ``modalities`` (one vmapped fit each, like the fused run).

    Args:
      cfg: the fused run's config (``train.pretrain_epochs`` > 0).
      splits: the data of every run, as the fused run gets it.
      seeds: the seed of every run.
      hparams: the per-run hyper-parameters of the fused run; their ``lr`` / ``weight_decay`` carry over.
      modalities: the modalities whose encoders are pre-trained.
      run_dir: the fused run's folder (pre-training goes to ``<run_dir>/pretrain/<m>/``); ``None``: no files.
      resume: continue (or reuse, when finished) the pre-training a folder holds.
      overwrite: replace it.

    Returns:
      modality -> :class:`Pretrained` (the selected parameters of every run).

    Raises:
      ValueError: ``resume`` of a pre-training recorded with other settings.
    """
    from jaxmm.train.loop import fit  # the loop imports this module

    out = {}
    for m in modalities:
        sub = pretrain_config(cfg, m)
        method = get_method("unimodal", **sub.method_options)
        folder = None if run_dir is None else os.path.join(run_dir, PRETRAIN_DIR, m)
        record = None if folder is None else to_dict(sub)
        again = resume and folder is not None and os.path.isfile(os.path.join(folder, "config.json"))
        if again:
            _check_reusable(folder, record)
        result = fit(method, splits, seeds, sub.model, sub.optimizer, sub.train,
                     hparams=[{k: v for k, v in h.items() if k in OPTIMIZER_HPARAMS} for h in hparams],
                     run_dir=folder, resume=again, overwrite=overwrite and not again, record=record,
                     loss=sub.loss or None)
        out[m] = Pretrained(_encoder(result.params, m, "pre-trained unimodal"),
                            _encoder(result.rest, m, "pre-trained unimodal"), result.test)
    return out


def _encoder(tree, modality: str, what: str):
    """``tree['encoders'][modality]``, or a clear error for a model without ``encoders[m]``."""
    try:
        return tree["encoders"][modality]
    except (KeyError, TypeError):
        raise ValueError(f"unimodal pre-training needs the {what} model to expose its encoder as "
                         f"model.encoders[{modality!r}] (an nnx.Dict of modules); the model has no such "
                         "attribute: add it to your model factory or set train.pretrain_epochs=0") from None


def _path_names(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path)


def _replace_encoder(tree, modality: str, source, keep) -> object:
    """``tree`` with every leaf under ``encoders[modality]`` for which ``keep(leaf)`` taken from ``source``."""
    _encoder(tree, modality, "fused")
    leaves = {_path_names(p): v for p, v in jax.tree_util.tree_flatten_with_path(source)[0]}

    def take(path, leaf):
        names = _path_names(path)
        if names[:2] != ("encoders", modality) or not keep(leaf):
            return leaf
        new = leaves.get(names[2:])
        if new is None or new.shape != leaf.shape or new.dtype != leaf.dtype:
            raise ValueError(f"the pre-trained encoder of {modality!r} does not match the fused model's at "
                             f"{'/'.join(map(str, names))} (a different model config?)")
        return jnp.copy(new)  # the train step donates its state: never alias the caller's arrays

    return jax.tree_util.tree_map_with_path(take, tree)


def _is_float(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.floating)


def load_encoders(state, pretrained: Mapping[str, Pretrained], mesh):
    """The train state ``state`` (``[R]`` runs) with run ``i``'s encoders taken from run ``i``'s pre-training.

    Parameters are copied whole; of the other state only floating-point leaves (BatchNorm
    statistics), not the PRNG streams. The optimiser state is untouched (its moments start at 0
    whatever the parameters).

    Raises:
      ValueError: a model without ``encoders[m]``, or an encoder whose layout differs.
    """
    params, rest = state.params, state.rest
    for m, p in pretrained.items():
        params = _replace_encoder(params, m, p.params, lambda leaf: True)
        rest = _replace_encoder(rest, m, p.rest, _is_float)
    return state._replace(params=replicate(params, mesh), rest=replicate(rest, mesh))


def freeze_encoders(method: Method, modalities: Sequence[str]) -> Method:
    """``method`` with the encoders of ``modalities`` added to what its ``trainable`` mask freezes."""
    frozen = tuple(modalities)
    own = method.trainable

    def trainable(params, ctx):
        keep = own(params, ctx) if own is not None else jax.tree.map(lambda _: True, params)
        return jax.tree_util.tree_map_with_path(
            lambda path, k: False if _path_names(path)[:1] == ("encoders",) and _path_names(path)[1] in frozen
            else k, keep)

    return dataclasses.replace(method, trainable=trainable)
