"""Divergence of the training loss, per run: a small pure state machine and a stateful wrapper.

A run *diverges* at an epoch when its mean training loss is NaN/inf, or when it rose far above the
best it reached before::

    loss - best > (factor - 1) * max(|best|, |first|)

where ``best`` is the run's running minimum over the earlier epochs and ``first`` its first epoch's
loss, for ``patience`` epochs in a row. The reference ``max(|best|, |first|)`` keeps a loss that fell
close to zero (a fitted training set: 1e-5, then 1e-3) from counting as a blow-up; a loss has to
climb ``factor`` times above where the run started, or above its best if that is higher, which an
optimiser that is merely noisy, or a method that re-initialises a part of the model, does not do.
Adam at lr 1e6 (loss 1 → 2.5e20) is flagged at the first epoch past the threshold.

Use in the epoch loop (``train.on_divergence``: ``"stop"`` raises, ``"warn"`` warns, ``"ignore"``
skips the check)::

    monitor = DivergenceMonitor(num_runs, names=[f"seed {s}" for s in seeds])
    for record in history:                    # on resume: replay what the run saw before
        monitor.update(record["epoch"], record["train/loss"])
    ...
    found = monitor.update(epoch, record["train/loss"])   # each epoch
    if found and on_divergence == "stop":
        raise FloatingPointError(found.message)
    if found and on_divergence == "warn":
        warnings.warn(found.message)

A run is reported once (later epochs report only runs that newly diverge).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

DEFAULT_FACTOR = 100.0
DEFAULT_PATIENCE = 1
HINT = "the learning rate is likely too high for this optimiser: lower optimizer.lr"


class DivergenceState(NamedTuple):
    """Per-run state, arrays ``[R]``.

    Attributes:
      first: the first finite epoch loss (NaN until one is seen).
      best: the running minimum of the finite epoch losses (NaN until one is seen).
      best_epoch: the epoch of ``best`` (-1 until one is seen).
      streak: consecutive epochs above the threshold.
      flagged: the run was reported as diverged.
    """

    first: np.ndarray
    best: np.ndarray
    best_epoch: np.ndarray
    streak: np.ndarray
    flagged: np.ndarray


class Divergence(NamedTuple):
    """What :func:`update` found at one epoch.

    Attributes:
      epoch: the epoch.
      runs: indices of the runs that newly diverged.
      nonfinite: whether any of them has a NaN/inf loss (the others grew past the threshold).
      message: one line naming the epoch, the runs, their losses and the likely cause.
    """

    epoch: int
    runs: tuple[int, ...]
    nonfinite: bool
    message: str

    def __str__(self) -> str:
        return self.message


def init(num_runs: int) -> DivergenceState:
    """The state before the first epoch."""
    nan = np.full(num_runs, np.nan)
    return DivergenceState(nan, nan.copy(), np.full(num_runs, -1), np.zeros(num_runs, int),
                           np.zeros(num_runs, bool))


def _check(factor: float, patience: int) -> None:
    if not factor > 1:
        raise ValueError(f"divergence factor must be > 1, got {factor}")
    if int(patience) != patience or patience < 1:
        raise ValueError(f"divergence patience must be a positive integer, got {patience}")


def update(state: DivergenceState, epoch: int, losses, *, factor: float = DEFAULT_FACTOR,
           patience: int = DEFAULT_PATIENCE, names: Sequence[str] | None = None,
           hint: str = HINT) -> tuple[DivergenceState, Divergence | None]:
    """Folds one epoch's mean training losses ``[R]`` (or a scalar for one run) into ``state``.

    Args:
      state: from :func:`init` or the previous call.
      epoch: the epoch the losses belong to (named in the message).
      losses: one mean training loss per run.
      factor: how far above the reference ``max(|best|, |first|)`` a loss must rise.
      patience: consecutive epochs above the threshold before a run counts as diverged.
      names: a label per run for the message (default ``run <i>``).
      hint: the likely cause and fix, appended to the message.

    Returns:
      ``(new state, Divergence or None)``; ``None`` when no run newly diverged.
    """
    _check(factor, patience)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if losses.shape != state.best.shape:
        raise ValueError(f"got {losses.size} losses for {state.best.size} runs")
    finite = np.isfinite(losses)
    seen = np.isfinite(state.best)
    reference = np.maximum(np.abs(state.best), np.abs(state.first))
    with np.errstate(invalid="ignore"):
        above = seen & finite & (losses - state.best > (factor - 1) * reference)
    streak = np.where(above, state.streak + 1, 0)
    diverged = (~finite | (streak >= patience)) & ~state.flagged
    first = np.where(np.isnan(state.first) & finite, losses, state.first)
    improved = finite & ~(losses >= state.best)  # also true where best is still NaN
    best = np.where(improved, losses, state.best)
    best_epoch = np.where(improved, epoch, state.best_epoch)
    new = DivergenceState(first, best, best_epoch, streak, state.flagged | diverged)
    if not diverged.any():
        return new, None
    runs = tuple(int(r) for r in np.flatnonzero(diverged))
    label = (lambda r: names[r]) if names is not None else (lambda r: f"run {r}")
    parts = []
    for r in runs:
        if not finite[r]:
            parts.append(f"{label(r)} has loss {losses[r]}")
        else:
            since = ("its initial loss" if state.best_epoch[r] < 0
                     else f"{state.best[r]:.3g} at epoch {int(state.best_epoch[r])}")
            if state.best_epoch[r] < 0:
                since += f" {state.best[r]:.3g}"
            parts.append(f"{label(r)} rose to {losses[r]:.3g} from {since} (more than {factor:g}x its start or best)")
    message = f"training loss diverged at epoch {epoch}: {'; '.join(parts)}; {hint}"
    return new, Divergence(int(epoch), runs, bool((~finite[list(runs)]).any()), message)


def check_divergence(losses, *, factor: float = DEFAULT_FACTOR, patience: int = DEFAULT_PATIENCE,
                     names: Sequence[str] | None = None, hint: str = HINT) -> Divergence | None:
    """The first divergence in a loss history ``[epochs]`` (one run) or ``[epochs, runs]``, or ``None``.

    Epochs are numbered from 0 in the message.
    """
    history = np.asarray(losses, dtype=np.float64)
    history = history.reshape(len(history), -1)
    state = init(history.shape[1])
    for epoch, row in enumerate(history):
        state, found = update(state, epoch, row, factor=factor, patience=patience, names=names, hint=hint)
        if found:
            return found
    return None


class DivergenceMonitor:
    """Stateful wrapper of :func:`update` for the epoch loop.

    Args:
      num_runs: runs trained side by side.
      factor: how far above ``max(|best|, |first|)`` a loss must rise (default 100).
      patience: consecutive epochs above the threshold before a run counts as diverged (default 1).
      names: a label per run for messages, e.g. ``["seed 0", "seed 1"]`` (default ``run <i>``).
      hint: the likely cause and fix, appended to messages.

    Raises:
      ValueError: ``factor <= 1`` or ``patience`` not a positive integer.
    """

    def __init__(self, num_runs: int, *, factor: float = DEFAULT_FACTOR, patience: int = DEFAULT_PATIENCE,
                 names: Sequence[str] | None = None, hint: str = HINT):
        _check(factor, patience)
        if names is not None and len(names) != num_runs:
            raise ValueError(f"got {len(names)} run names for {num_runs} runs")
        self.factor, self.patience, self.names, self.hint = factor, patience, names, hint
        self.state = init(num_runs)

    def start(self, losses) -> None:
        """Records the runs' losses before training (the first step's loss at the initial parameters),
        so that a loss that explodes within the first epoch is caught against them."""
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        finite = np.isfinite(losses)
        self.state = self.state._replace(first=np.where(finite, losses, self.state.first),
                                         best=np.where(finite, losses, self.state.best),
                                         best_epoch=np.where(finite, -1, self.state.best_epoch))

    def update(self, epoch: int, losses) -> Divergence | None:
        """Folds in one epoch's mean training losses ``[R]``; the runs that newly diverged, if any."""
        self.state, found = update(self.state, epoch, losses, factor=self.factor, patience=self.patience,
                                   names=self.names, hint=self.hint)
        return found
