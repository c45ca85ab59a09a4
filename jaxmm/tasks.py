"""What is predicted: the task object that losses, methods, selection and metrics read.

A :class:`Task` names the kind (``classification`` or ``regression``), the loss (softmax or
sigmoid cross-entropy; L1 or MSE) and the output width, and owns the per-example loss, the
evaluation report and the direction of the selection metric, so no other module assumes
classification.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmm._checks import check_choice
from jaxmm.losses.ce import sigmoid_cross_entropy, softmax_cross_entropy
from jaxmm.losses.regression import l1_loss, mse_loss
from jaxmm.metrics.classification import classification_report, classification_reports
from jaxmm.metrics.regression import regression_report

KINDS = ("classification", "regression")
LOSSES = {"classification": ("auto", "softmax", "sigmoid"), "regression": ("l1", "mse")}
LOWER_IS_BETTER = ("mae", "mse", "loss")


@dataclasses.dataclass(frozen=True)
class Task:
    """A prediction task.

    Attributes:
      kind: ``classification`` or ``regression``.
      loss_name: classification: ``auto`` (one sigmoid logit for two classes, softmax otherwise),
        ``softmax`` or ``sigmoid`` (one-vs-rest binary cross-entropies, summed over classes);
        regression: ``l1`` (MultiBench / BTW) or ``mse``.
      num_classes: classes of a classification task; the target width of a regression task.
    """

    kind: str = "classification"
    loss_name: str = "auto"
    num_classes: int = 2

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS, owner="task")
        check_choice(f"loss of a {self.kind} task", self.loss_name, LOSSES[self.kind], owner="task")
        if self.num_classes < (2 if self.kind == "classification" else 1):
            raise ValueError(f"task: a {self.kind} task needs num_classes >= "
                             f"{2 if self.kind == 'classification' else 1}, got {self.num_classes}")

    @property
    def num_outputs(self) -> int:
        """Logits (or regression outputs) per head."""
        if self.kind == "classification" and self.num_classes == 2 and self.loss_name != "softmax":
            return 1
        return self.num_classes

    @property
    def select_metric(self) -> str:
        """The default validation metric for model selection: ``acc`` or ``mae``."""
        return "acc" if self.kind == "classification" else "mae"

    def loss(self, prediction: jax.Array, labels: jax.Array) -> jax.Array:
        """Per-example loss ``[B]`` of ``prediction [B, num_outputs]`` against the labels."""
        if self.kind == "regression":
            return (mse_loss if self.loss_name == "mse" else l1_loss)(prediction, labels)
        if prediction.shape[-1] == 1:
            return sigmoid_cross_entropy(prediction, labels)
        if self.loss_name == "sigmoid":
            one_hot = jax.nn.one_hot(labels, prediction.shape[-1], dtype=prediction.dtype)
            return jnp.sum(jax.nn.softplus(prediction) - one_hot * prediction, axis=-1)
        return softmax_cross_entropy(prediction, labels)

    def report(self, prediction: np.ndarray, labels: np.ndarray,
               unimodal: Mapping[str, np.ndarray] | None = None, *, groups: np.ndarray | None = None,
               group_names: Sequence[str] | None = None) -> dict[str, float]:
        """Evaluation metrics of one run (numpy): classification or regression report.

        Regression adds ``mae/<modality>`` for each unimodal prediction.
        """
        if self.kind == "classification":
            return classification_report(prediction, labels, self.num_classes, unimodal, groups=groups,
                                         group_names=group_names)
        report = regression_report(prediction, labels)
        for m, p in (unimodal or {}).items():
            report[f"mae/{m}"] = regression_report(p, labels)["mae"]
        return report

    def reports(self, prediction: np.ndarray, labels: np.ndarray,
                unimodal: Mapping[str, np.ndarray] | None = None, *, groups: np.ndarray | None = None,
                group_names: Sequence[str] | None = None) -> list[dict[str, float]]:
        """:meth:`report` of every run of a grid: arrays ``[R, N, ...]`` (``groups``: ``[R, N]``).

        Classification reports are computed for all runs at once.
        """
        if self.kind == "classification":
            return classification_reports(prediction, labels, self.num_classes, unimodal, groups=groups,
                                          group_names=group_names)
        return [self.report(prediction[r], labels[r], {m: u[r] for m, u in (unimodal or {}).items()},
                            groups=None if groups is None else groups[r], group_names=group_names)
                for r in range(len(labels))]


def selection_score(metrics: Mapping[str, float], name: str) -> float:
    """``metrics[name]`` oriented so that higher is better (error metrics are negated); NaN if absent."""
    value = float(metrics.get(name, np.nan))
    return -value if name.split("/")[0] in LOWER_IS_BETTER else value


def task_of(kind: str, num_classes: int, loss: str | None = None) -> Task:
    """A :class:`Task` of ``kind`` with the kind's default loss unless ``loss`` is given."""
    default = "auto" if kind == "classification" else "l1"
    return Task(kind, loss or default, num_classes)
