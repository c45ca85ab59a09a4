"""Bad labels and inputs are refused before training, in one line naming the split and the fix."""
import numpy as np
import pytest

from jaxmm.data.types import ArrayDataset, DatasetSplits
from jaxmm.data.validate import validate_dataset, validate_splits


def ds(label, x=None, classes=3, task="classification", name="dataset"):
    label = np.asarray(label)
    x = np.zeros((len(label), 2), np.float32) if x is None else x
    return ArrayDataset({"a": x}, label, classes, name=name, task=task)


def splits(train):
    good = ds([0, 1, 2], name="val") if train.task == "classification" else \
        ds(np.zeros(3, np.float32), classes=1, task="regression", name="val")
    return DatasetSplits(train, good, good)


def refused(dataset, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        validate_splits(splits(dataset))
    assert "\n" not in str(err.value)


def test_good_labels_pass():
    validate_dataset(ds([0, 1, 2, 1]))
    validate_dataset(ds(np.array([0.0, 2.0, 1.0], np.float32)))  # whole-number floats are class ids
    validate_dataset(ds(np.array([True, False])), "train")
    validate_dataset(ds(np.array([0.3, -2.5], np.float32), classes=1, task="regression"))
    validate_dataset(ds(np.zeros((2, 3), np.float32), classes=3, task="regression"))


def test_nan_label_for_classification():
    refused(ds(np.array([0.0, np.nan, 1.0], np.float32)),
            r"^dataset \(train split\): 1 labels are NaN/inf \(first examples \[1\]\); a classification task needs "
            r"integer class ids in \[0, 3\): drop or fix those examples$")


def test_non_integer_label_for_classification():
    refused(ds(np.array([0.0, 0.5, 1.7], np.float32)),
            r"^dataset \(train split\): 2 labels are not whole numbers, e.g. \[0.5, 1.7\]; .* cast class ids with "
            r"label.astype\(int\), or use task='regression' for continuous targets$")


def test_labels_out_of_range():
    refused(ds([0, 3, -1]), r"^dataset \(train split\): 2 labels outside \[0, 3\), e.g. \[3, -1\]; fix num_classes "
                            r"or the labels$")
    refused(ds(np.array([0.0, 5.0], np.float32)), r"labels outside \[0, 3\), e.g. \[5\]")


def test_string_labels():
    refused(ds(np.array(["cat", "dog"])), r"labels have dtype <U3; .* map them to ids first")


def test_regression_targets_must_be_finite():
    refused(ds(np.array([0.1, np.inf, np.nan], np.float32), classes=1, task="regression"),
            r"^dataset \(train split\): 2 regression targets are NaN/inf \(first examples \[1, 2\]\); drop or "
            r"impute those examples before training$")


def test_nan_inputs_and_the_split_named():
    x = np.zeros((3, 2), np.float32)
    x[2, 1] = np.nan
    bad = ds([0, 1, 2], x=x, name="mydata/val")
    with pytest.raises(ValueError, match=r"^mydata/val: modality 'a' has NaN/inf values in 1 examples \(first "
                                         r"indices \[2\]\); clean or impute them before training$"):
        validate_splits(DatasetSplits(ds([0, 1, 2], name="mydata/train"), bad, bad))


def test_empty_split():
    with pytest.raises(ValueError, match=r"^dataset \(test split\): the split is empty"):
        validate_dataset(ds(np.zeros(0, np.int64)), "test")
