"""The epoch loop: training, validation, selection, early stopping, checkpoints and outputs."""
from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmm.data.prefetch import prefetch_to_mesh
from jaxmm.data.types import DatasetSplits
from jaxmm.data.validate import validate_splits
from jaxmm.methods.base import EpochContext, EpochHook, Method, RunState
from jaxmm.models.multimodal import ModelConfig
from jaxmm.tasks import Task, selection_score, task_of
from jaxmm.train.batching import batches, check_augmented, epoch_permutations, num_batches, stack_runs
from jaxmm.train.checkpoint import Checkpointer
from jaxmm.train.config import OptimizerConfig, TrainConfig
from jaxmm.train.datacache import DataCache
from jaxmm.train.diagnostics import check_reference, write_figures
from jaxmm.train.distributed import is_main_process, sync
from jaxmm.train.divergence import DivergenceMonitor
from jaxmm.train.optim import plateau_step, reduce_learning_rate, with_total_steps
from jaxmm.train.loggers import EpochLoggers, check_available
from jaxmm.train.outputs import RunDir, run_labels
from jaxmm.train.pretrain import Pretrained, load_encoders
from jaxmm.train.progress import Progress
from jaxmm.train.rundir import RunLock, claim
from jaxmm.train.sharding import process_rows, replicate, to_host
from jaxmm.train.state import ModelFactory
from jaxmm.train.trainer import Trainer, resolve_hparams


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      test: per-run test metrics of the selected parameters.
      val: per-run validation metrics of the selected parameters.
      selected_epoch: per-run epoch (1-based count of epochs trained) whose parameters were kept.
      history: the per-epoch records written to ``metrics.jsonl`` (``epoch`` 1-based: the epochs trained).
      state: the final train state (last epoch; the selected parameters are in ``params``).
      params: the selected parameters (stacked over runs).
      trainer: the compiled functions (for further evaluation).
      method_state: the method state that goes with ``params`` (the evaluation pass reads it).
      rest: the non-parameter model state that goes with ``params`` (BatchNorm statistics).
    """

    test: list[dict]
    val: list[dict]
    selected_epoch: list[int]
    history: list[dict]
    state: object
    params: object
    trainer: Trainer
    method_state: object = None
    rest: object = None


@functools.partial(jax.jit, static_argnums=0)
def _run_losses(task: Task, pred, labels):
    """Per-example task losses ``[R, N]`` of every run's predictions (one program per task and shape)."""
    return jax.vmap(task.loss)(pred, labels)


def _reports(task: Task, pred, labels, unimodal, groups, group_names) -> list[dict]:
    """The task's report of every run (``[R, N, ...]`` arrays) plus ``loss``: the mean task loss of its
    predictions (the per-example losses of all runs computed in one call)."""
    losses = np.asarray(_run_losses(task, pred, labels))
    reports = task.reports(pred, labels, unimodal, groups=groups, group_names=group_names)
    for report, run_losses in zip(reports, losses):
        report["loss"] = float(np.mean(run_losses))
    return reports


def evaluate_split(trainer: Trainer, state, data, split_meta, chunk: int) -> list[dict]:
    """Per-run evaluation reports of the stacked split ``data`` (``split_meta``: its host
    :class:`ArrayDataset`, for the group names) in chunks of ``chunk`` examples."""
    pred, uni = trainer.predict(state, data, chunk)
    return _reports(trainer.task, pred, data.label, uni, data.meta.get("source"), split_meta.group_names)


def _epoch_means(step_metrics: list[dict]) -> dict:
    """``train/<name>``: each metric summed over the epoch's steps in step order, then divided by their number
    (host arrays: no program to compile, one transfer per epoch)."""
    sums = jax.tree.map(lambda *xs: functools.reduce(np.add, xs), *step_metrics)
    return {f"train/{k}": v / len(step_metrics) for k, v in sums.items()}


def _select(improved, new, old):
    return jax.tree.map(lambda a, b: jnp.where(improved.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _check_select_metric(trainer: Trainer, hparams: dict, example, val, val_meta, name: str) -> None:
    """Refuses a selection metric the validation report will not have (traced abstractly, before compiling)."""
    pred, uni = trainer.output_shapes(hparams, example)
    n = val.label.shape[1]
    (report,) = trainer.task.reports(np.zeros((1, n, *pred.shape[1:]), np.float32), val.label[:1],
                                     {m: np.zeros((1, n, *u.shape[1:]), np.float32) for m, u in uni.items()},
                                     groups=val.meta["source"][:1] if "source" in val.meta else None,
                                     group_names=val_meta.group_names)
    report["loss"] = 0.0  # every report has it (see _reports)
    if name not in report:
        raise ValueError(f"train.select_metric={name!r} is not a validation metric of this run; choose one of "
                         f"{sorted(report)}")


def task_of_splits(splits: DatasetSplits, loss: str | None = None) -> Task:
    """The :class:`Task` of a dataset: its kind, its classes (or target width) and ``loss`` (default per kind)."""
    label = splits.train.label
    width = label.shape[1] if splits.train.task == "regression" and label.ndim == 2 else 1
    return task_of(splits.train.task, splits.num_classes if splits.train.task == "classification" else width, loss)


def run_epoch_hook(trainer: Trainer, hook: EpochHook, state, data: dict, epoch: int, num_epochs: int,
                   chunk: int):
    """Runs a method's one-run epoch hook over every run (vmapped) and restores the state's placement.

    Returns:
      (new train state, the hook's logs as ``[R]`` arrays).
    """
    splits = tuple(hook.reads(epoch, num_epochs))
    outputs = {s: trainer.outputs(state, data[s], chunk) for s in splits}
    labels = {s: data[s].label for s in splits}

    def one(run, run_labels, run_outputs):
        return hook.update(run, EpochContext(epoch, num_epochs, run_labels, run_outputs, trainer.labels, trainer.task))

    run = jax.vmap(one)(RunState(state.params, state.method_state, state.step, {}), labels, outputs)
    run = jax.tree.map(jnp.copy, run)  # no two leaves share a buffer (the next step donates the state)
    state = state._replace(params=replicate(run.params, trainer.mesh),
                           method_state=replicate(run.state, trainer.mesh))
    if hook.reset_optimizer(epoch):
        state = trainer.reset_optimizer(state)
    return state, {k: to_host(v) for k, v in run.logs.items()}


def fit(method: Method, splits: Sequence[DatasetSplits], seeds: Sequence[int],
        model: ModelConfig | ModelFactory, optimizer: OptimizerConfig | optax.GradientTransformation,
        train_cfg: TrainConfig, *, hparams: Sequence[dict] | None = None, run_dir: str | None = None,
        resume: bool = False, overwrite: bool = False, record: Mapping | None = None, mesh=None,
        per_term_grads: bool = False, labels: Callable | None = None, loss: str | None = None,
        init_encoders: Mapping[str, Pretrained] | None = None, data_cache: DataCache | None = None) -> FitResult:
    """Trains ``len(seeds)`` runs of ``method`` side by side (one vmapped program).

    A run directory holds one run (:mod:`jaxmm.train.rundir`): a new run into one that holds a run
    is refused unless ``resume`` or ``overwrite``, and a lock keeps a second process out while
    this one trains. Each epoch's record goes to ``metrics.jsonl``, to the loggers of ``train_cfg``
    (:mod:`jaxmm.train.loggers`: TensorBoard event files, W&B) and to the progress display
    (:mod:`jaxmm.train.progress`); the figures of :mod:`jaxmm.train.diagnostics` close the run.

    With several processes (:mod:`jaxmm.train.distributed`) every process calls it with the same
    arguments: each gathers and puts on its devices only its own rows of every global batch (the
    global order is that of one process), all write the checkpoints together, and process 0 alone
    claims the run folder and writes the files, logs and progress.

    Args:
      method: the method to train.
      splits: one :class:`DatasetSplits` per run (equal sizes), or a single one shared by all runs.
      seeds: model seeds, one per run.
      model: a :class:`ModelConfig` (the built-in classifier) or a factory ``rngs -> nnx.Module``
        following the model protocol (:mod:`jaxmm.train.state`).
      optimizer: an :class:`OptimizerConfig` (learning rate and weight decay vmappable per run)
        or any ``optax.GradientTransformation`` (clipping, warm-up, cosine, …).
      train_cfg: the epoch loop.
      hparams: per-run hyper-parameter overrides (e.g. ``[{"lam": 1.0}, {"lam": 10.0}]``).
      run_dir: output folder (``None``: no files, no checkpoints).
      resume: continue from the newest checkpoint in ``run_dir``.
      overwrite: replace the run ``run_dir`` holds (its checkpoints and outputs are removed first).
      record: the run's configuration, written atomically to ``run_dir/config.json`` when a new
        run starts, or once a resume has restored its checkpoint.
      mesh: device mesh (default: all devices on a ``data`` axis).
      per_term_grads: compute gradients term by term (one forward, vmapped VJP).
      labels: ``params -> group names`` for the method's transform (default: the built-in
        model's layout, :func:`~jaxmm.models.groups.param_labels`).
      loss: the task's loss (classification ``auto|softmax|sigmoid``, regression ``l1|mse``;
        default ``auto`` / ``l1``).
      init_encoders: modality -> pre-trained encoder of every run
        (:func:`~jaxmm.train.pretrain.pretrain_encoders`): a new run starts ``encoders[m]`` from it
        (a resume restores its checkpoint instead).
      data_cache: where the runs' stacked splits are shared with other trainings on the same datasets.

    A new run in one process compiles its train step in a background thread while the initialisation
    compiles (:meth:`~jaxmm.train.trainer.Trainer.compile_step`).

    The validation and test reports carry ``loss`` (the task loss of the predictions); the
    ``plateau`` schedule of an :class:`OptimizerConfig` steps on the validation loss after every
    epoch (its state is checkpointed with the loop), and ``cosine`` without ``total_steps`` decays
    over ``train_cfg.epochs`` epochs.

    Returns:
      A :class:`FitResult`.

    Raises:
      FileExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is given.
      RuntimeError: another process is training into ``run_dir``.
      ValueError: inconsistent arguments, a ``select_metric`` the validation report lacks, or a
        ``train.unimodal_reference`` of modalities the data lacks (or of a regression task).
      ImportError: a logger ``train_cfg`` asks for is not installed.
    """
    check_available(train_cfg, run_dir)  # before the run folder is claimed (an overwrite empties it)
    check_reference(train_cfg.unimodal_reference, list(splits[0].train.inputs), splits[0].train.task)
    if run_dir is None:
        return _train(method, splits, seeds, model, optimizer, train_cfg, hparams, None, False, None, mesh,
                      per_term_grads, labels, loss, init_encoders, data_cache)
    claim(run_dir, resume=resume, overwrite=overwrite)
    with RunLock(run_dir):
        return _train(method, splits, seeds, model, optimizer, train_cfg, hparams, run_dir, resume, record, mesh,
                      per_term_grads, labels, loss, init_encoders, data_cache)


def _train(method, splits, seeds, model, optimizer, train_cfg, hparams, run_dir, resume, record, mesh,
           per_term_grads, labels, loss, init_encoders, data_cache) -> FitResult:
    """:func:`fit` with the run directory claimed and locked."""
    seeds = list(seeds)
    splits = list(splits) if len(splits) > 1 else list(splits) * len(seeds)
    if len(splits) != len(seeds):
        raise ValueError(f"got {len(splits)} dataset splits for {len(seeds)} seeds; pass one per seed or one shared")
    hparams = list(hparams or [{}] * len(seeds))
    if len(hparams) != len(seeds):
        raise ValueError(f"got {len(hparams)} hyper-parameter sets for {len(seeds)} seeds")
    for s in splits:
        validate_splits(s)
    first = splits[0]
    task = task_of_splits(first, loss)
    input_shapes = {m: tuple(x.shape[1:]) for m, x in first.train.inputs.items()}
    n_train = len(first.train)
    hp = resolve_hparams(method, optimizer, hparams)
    steps_per_epoch = num_batches(n_train, train_cfg.batch_size)
    plateau = isinstance(optimizer, OptimizerConfig) and optimizer.schedule == "plateau"
    optimizer = with_total_steps(optimizer, train_cfg.epochs, steps_per_epoch)
    trainer = Trainer(method, input_shapes, task, model, optimizer, mesh, per_term_grads,
                      steps_per_epoch=steps_per_epoch, labels=labels,
                      augment_frames=train_cfg.augment_frames, parallel=train_cfg.parallel,
                      batch_norm=train_cfg.batch_norm)
    stack = data_cache.stacked if data_cache else stack_runs
    data = {name: stack([getattr(s, name) for s in splits]) for name in ("train", "val", "test")}
    check_augmented(data["train"], train_cfg.augment_frames)
    select_metric = train_cfg.select_metric or task.select_metric

    example = next(batches(data["train"], np.arange(n_train)[None], train_cfg.batch_size))
    one_run = jax.tree.map(lambda x: x[0], example)
    _check_select_metric(trainer, {k: v[0] for k, v in hp.items()}, one_run, data["val"], first.val, select_metric)
    if not (resume or init_encoders) and jax.process_count() == 1:  # the step compiles while init does
        trainer.compile_step(seeds, hp, jax.tree.map(lambda x: np.broadcast_to(x, (len(seeds), *x.shape[1:])), example))
    hp = replicate(hp, trainer.mesh)  # once, not every step
    state = trainer.init(seeds, hp, one_run)
    if init_encoders:
        state = load_encoders(state, init_encoders, trainer.mesh)
    runs = len(seeds)
    loop = {"epoch": np.zeros((), np.int32), "best_score": np.full(runs, -np.inf, np.float32),
            "best_epoch": np.zeros(runs, np.int32), "bad_epochs": np.zeros(runs, np.int32)}
    if plateau:  # ReduceLROnPlateau's state, per run
        loop["plateau_best"] = np.full(runs, np.inf, np.float32)
        loop["plateau_bad"] = np.zeros(runs, np.int32)
    if train_cfg.select == "best":
        loop["best_params"], loop["best_rest"], loop["best_method_state"] = jax.tree.map(
            jnp.copy, (state.params, state.rest, state.method_state))  # state is donated

    out = RunDir(run_dir) if run_dir else None
    ckpt = Checkpointer(run_dir) if run_dir and train_cfg.checkpoint_every else None
    start = 0
    if resume:
        if ckpt is None or ckpt.latest_epoch() is None:
            raise FileNotFoundError(f"--resume: no checkpoint found under {run_dir}/checkpoints")
        restored = ckpt.restore({"state": state, "loop": loop})
        state, loop = restored["state"], restored["loop"]
        start = int(loop["epoch"])
        out.truncate_metrics(start)
    elif out:
        out.truncate_metrics(0)
    if out and record is not None:  # a resume records its (new) settings only once its checkpoint restored
        out.write_json("config.json", record)
    if out:
        sync("jaxmm-run-folder")  # process 0's truncation is done before any process reads the metrics
    history = out.read_metrics() if out else []
    divergence = DivergenceMonitor(runs, factor=train_cfg.divergence_factor,
                                   names=[f"run {i} (seed {s})" for i, s in enumerate(seeds)])
    for old in history:  # a resumed run remembers its start and best losses
        divergence.update(old["epoch"], old["train/loss"])

    labels = run_labels(seeds, hparams)
    rows = process_rows(train_cfg.batch_size, trainer.mesh)  # this process's rows of every batch (all with one)
    name = os.path.basename(os.path.abspath(run_dir)) if run_dir else method.name
    with EpochLoggers(train_cfg, run_dir, labels, history, name=name, config=record) as loggers, \
            Progress(f"{method.name} x{runs}", start, train_cfg.epochs, enabled=train_cfg.progress) as progress:
        for epoch in range(start, train_cfg.epochs):  # 0-based, as methods see it; records count epochs trained
            step_metrics = []
            epoch_batches = batches(data["train"], epoch_permutations(seeds, epoch, n_train), train_cfg.batch_size,
                                    rows=rows)
            for batch in prefetch_to_mesh(epoch_batches, trainer.mesh, local=True):
                state, metrics = trainer.step(state, batch, hp)
                if epoch == 0 and not step_metrics:  # the loss at the initial parameters: divergence's baseline
                    divergence.start(to_host(metrics["loss"]))
                step_metrics.append(metrics)
            state = state._replace(epoch=state.epoch + 1)
            entry = {"epoch": epoch + 1, **_epoch_means(to_host(step_metrics))}
            if method.epoch_end is not None:
                state, logs = run_epoch_hook(trainer, method.epoch_end, state, data, epoch, train_cfg.epochs,
                                             train_cfg.eval_batch_size)
                entry.update(logs)
            found = divergence.update(epoch + 1, entry["train/loss"])
            if found and train_cfg.on_divergence == "stop":
                raise FloatingPointError(f"{method.name}: {found.message} (train.on_divergence=warn trains on)")
            if found and train_cfg.on_divergence == "warn":
                warnings.warn(f"{method.name}: {found.message}", stacklevel=2)
            val = evaluate_split(trainer, state, data["val"], first.val, train_cfg.eval_batch_size)
            entry.update({f"val/{k}": [v[k] for v in val] for k in val[0]})
            if plateau:
                loop["plateau_best"], loop["plateau_bad"], reduce = plateau_step(
                    loop["plateau_best"], loop["plateau_bad"], np.asarray([v["loss"] for v in val]),
                    patience=optimizer.plateau_patience, threshold=optimizer.plateau_threshold)
                if reduce.any():
                    state = state._replace(opt_state=replicate(
                        reduce_learning_rate(state.opt_state, reduce, optimizer.plateau_factor), trainer.mesh))
                entry["lr"] = to_host(state.opt_state.hyperparams["learning_rate"])
            if train_cfg.eval_train:
                tr = evaluate_split(trainer, state, data["train"], first.train, train_cfg.eval_batch_size)
                entry.update({f"trainset/{k}": [v[k] for v in tr] for k in tr[0]})
            score = np.asarray([selection_score(v, select_metric) for v in val], np.float32)
            improved = score > loop["best_score"]
            loop["best_score"] = np.where(improved, score, loop["best_score"])
            loop["best_epoch"] = np.where(improved, epoch + 1, loop["best_epoch"])
            loop["bad_epochs"] = np.where(improved, 0, loop["bad_epochs"] + 1)
            if train_cfg.select == "best":
                for key, part in (("best_params", state.params), ("best_rest", state.rest),
                                  ("best_method_state", state.method_state)):
                    loop[key] = _select(jnp.asarray(improved), part, loop[key])
            loop["epoch"] = np.asarray(epoch + 1, np.int32)
            history.append(entry)
            if out:
                out.append_metrics(entry)
            loggers.write(entry)
            stop = bool(train_cfg.patience and np.all(loop["bad_epochs"] >= train_cfg.patience))
            if ckpt and ((epoch + 1) % train_cfg.checkpoint_every == 0 or epoch + 1 == train_cfg.epochs or stop):
                ckpt.save(epoch + 1, {"state": state, "loop": loop})  # an early stop saves what it reports
            progress.epoch(epoch + 1, {"loss": float(np.mean(entry["train/loss"])),
                                       f"val {select_metric}": float(np.nanmean(np.abs(score)))})
            if stop:
                break

    if train_cfg.select == "best":
        final = state._replace(params=loop["best_params"], rest=loop["best_rest"],
                               method_state=loop["best_method_state"])
        selected = [int(e) for e in loop["best_epoch"]]
    else:
        final, selected = state, [int(loop["epoch"])] * runs
    test = evaluate_split(trainer, final, data["test"], first.test, train_cfg.eval_batch_size)
    val = evaluate_split(trainer, final, data["val"], first.val, train_cfg.eval_batch_size)
    result = FitResult(test, val, selected, history, state, final.params, trainer, final.method_state, final.rest)
    if out:
        _write_outputs(out, method, seeds, hparams, result, task)
    if out and is_main_process() and train_cfg.figures:
        write_figures(out.path, history, labels, method=method, modalities=list(first.train.inputs),
                      metric=task.select_metric, model=model, reference=train_cfg.unimodal_reference)
    return result


def summarize(per_run: list[dict]) -> dict:
    """Mean and standard deviation over runs of every metric (NaNs, e.g. empty groups, ignored)."""
    out = {}
    for k in per_run[0]:
        values = np.asarray([r[k] for r in per_run], float)
        values = values[~np.isnan(values)]
        out[k] = {"mean": float(values.mean()) if values.size else float("nan"),
                  "std": float(values.std()) if values.size else float("nan")}
    return out


def _write_outputs(out: RunDir, method, seeds, hparams, result: FitResult, task: Task) -> None:
    runs = [{"seed": s, "hparams": h, "selected_epoch": e, "test": t, "val": v}
            for s, h, e, t, v in zip(seeds, hparams, result.selected_epoch, result.test, result.val)]
    out.write_json("results.json", {"method": method.name, "options": method.info.options, "task": task,
                                    "runs": runs, "test_summary": summarize(result.test)})
