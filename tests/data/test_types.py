import dataclasses

import numpy as np
import pytest

from jaxmm.data.types import ArrayDataset, DatasetSplits


def ds(label, task="classification", name="d", **kwargs):
    n = len(label)
    return ArrayDataset(inputs={"a": np.zeros((n, 2), np.float32)}, label=np.asarray(label),
                        num_classes=kwargs.pop("num_classes", 2), name=name, task=task, **kwargs)


def test_task_defaults_to_classification_and_meta_is_optional():
    d = ArrayDataset(inputs={"a": np.zeros((3, 2))}, label=np.array([0, 1, 0]), num_classes=2)
    assert d.task == "classification" and d.meta == {}
    assert d.take(np.array([2, 0])).meta == {}
    assert DatasetSplits(d, d, d).task == "classification"


def test_regression_needs_float_labels():
    r = ds(np.array([0.5, -1.0], np.float32), task="regression", num_classes=1)
    assert r.task == "regression"
    assert ds(np.zeros((2, 3), np.float64), task="regression", num_classes=1).label.shape == (2, 3)
    with pytest.raises(ValueError, match=r"d: regression labels must be floating point, got int64; cast"):
        ds(np.array([1, 2], np.int64), task="regression", num_classes=1)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match=r"d: task must be one of \('classification', 'regression'\), got 'ranking'"):
        ds([0, 1], task="ranking")


def test_subset_and_replace_keep_the_task():
    r = ds(np.arange(4, dtype=np.float32), task="regression", num_classes=1)
    assert r.subset(np.array([1, 3])).task == "regression"
    assert dataclasses.replace(r, name="x").task == "regression"


def test_splits_agree_on_the_task():
    c = ds([0, 1], name="val")
    r = ds(np.array([0.0, 1.0], np.float32), task="regression", num_classes=1, name="train")
    assert DatasetSplits(r, r, r).task == "regression"
    with pytest.raises(ValueError, match="splits disagree on the task: train is 'regression', val is 'classification'"):
        DatasetSplits(r, c, r)
