"""Dataset registry: name → loader returning one :class:`DatasetSplits` per seed (``jaxmm datasets``)."""
from __future__ import annotations

import dataclasses
from typing import Callable

from jaxmm.data.types import DatasetSplits


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Attributes:
      load: ``(seed, **options) -> DatasetSplits``.
      needs: what must be on disk (shown by ``jaxmm datasets``).
      summary: one line.
    """

    load: Callable[..., DatasetSplits]
    needs: str
    summary: str


def _spurious_xor(seed: int, alpha: float = 0.8) -> DatasetSplits:
    from jaxmm.data.synthetic import spurious_xor

    return spurious_xor.splits(seed, alpha)


def _pid_xor(seed: int, probs=(0.4, 0.0, 0.4, 0.2)) -> DatasetSplits:
    from jaxmm.data.synthetic import pid_xor

    return pid_xor.splits(seed, probs)


def _avdigits(seed: int, **options) -> DatasetSplits:
    from jaxmm.data.avdigits import load_avdigits

    return load_avdigits(seed=seed, **options)


DATASETS: dict[str, DatasetEntry] = {
    "spurious_xor": DatasetEntry(_spurious_xor, "nothing (generated)",
                                 "XOR across two modalities + a train-only spurious shortcut (option alpha)"),
    "pid_xor": DatasetEntry(_pid_xor, "nothing (generated)",
                            "PID-controlled XOR, one active source per example (option probs=(u1,u2,red,syn))"),
    "avdigits": DatasetEntry(_avdigits, "FSDD recordings (../shared/data/fsdd/recordings, $JAXMM_FSDD_DIR or fsdd_dir=)",
                             "real spoken digits paired with real handwritten digit images, held-out speakers"),
}


def load_dataset(name: str, seed: int, **options) -> DatasetSplits:
    """Loads a registered dataset for one seed.

    Raises:
      ValueError: unknown name (listing the registered ones) or bad options.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    try:
        return DATASETS[name].load(seed, **options)
    except TypeError as e:
        raise ValueError(f"bad options {options} for dataset {name!r}: {e}") from e
