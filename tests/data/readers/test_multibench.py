"""Tests for the MultiBench affect pickle reader on tiny left-padded fixtures."""

import numpy as np
import pytest

from jaxmm.data.readers import multibench
from jaxmm.data.readers.validate import DataFormatError

from multibench_fixture import T, make_split, write  # the shared writer (also used by tests/data, tests/train)


@pytest.fixture
def mosi(tmp_path):
    rng = np.random.default_rng(0)
    parts = {k: make_split(8, rng, empty_row=3 if k == "train" else None) for k in ("train", "valid", "test")}
    write(tmp_path / "mosi_data.pkl", {k: v[0] for k, v in parts.items()})
    return tmp_path, parts


def test_classification_labels_cleaning_and_left_padding(mosi):
    root, parts = mosi
    splits = multibench.load_multibench_affect(root, "mosi", variant="mult")
    raw, lengths = parts["train"]
    keep = np.arange(8) != 3
    train = splits.train
    assert len(train) == 7 and train.dropped == {"empty_text": 1} and len(splits.test) == 8
    np.testing.assert_array_equal(train.label, (raw["labels"].reshape(-1) > 0)[keep])
    assert train.num_classes == 2
    np.testing.assert_array_equal(train.meta["length"], lengths[keep])
    assert not np.isinf(train.inputs["audio"]).any() and train.inputs["audio"][0, -1, 0] == 0.0
    np.testing.assert_array_equal(train.inputs["vision"], raw["vision"][keep])
    assert train.inputs["text"].shape == (7, T, 300) and train.inputs["text"].dtype == np.float32


def test_right_padding_moves_content_to_the_front(mosi):
    root, parts = mosi
    test = multibench.load_multibench_affect(root, "mosi", variant="mult", padding="right").test
    raw, lengths = parts["test"]
    for i, length in enumerate(lengths):
        np.testing.assert_array_equal(test.inputs["vision"][i, :length], raw["vision"][i, T - length:])
        assert not test.inputs["vision"][i, length:].any()


def test_regression_targets_and_z_norm(mosi):
    root, parts = mosi
    val = multibench.load_multibench_affect(root / "mosi_data.pkl", "mosi", variant="mult", task="regression",
                                            z_norm=True).val
    raw, lengths = parts["valid"]
    np.testing.assert_allclose(val.label, raw["labels"].reshape(-1))
    assert val.num_classes == 1 and val.class_names is None and val.task == "regression"
    i = int(np.argmax(lengths))
    content = val.inputs["vision"][i, T - lengths[i]:]
    np.testing.assert_allclose(content.mean(0), 0.0, atol=1e-5)
    assert not val.inputs["vision"][i, :T - lengths[i]].any()


def test_humor_labels(tmp_path):
    rng = np.random.default_rng(1)
    content = {k: make_split(6, rng, label_shape=(), sentiment=False)[0] for k in ("train", "valid", "test")}
    write(tmp_path / "humor.pkl", content)
    cls = multibench.load_multibench_affect(tmp_path, "humor").train
    np.testing.assert_array_equal(cls.label, content["train"]["labels"].astype(int))
    assert cls.task == "classification"
    reg = multibench.load_multibench_affect(tmp_path, "humor", task="regression").train
    np.testing.assert_array_equal(reg.label, np.where(content["train"]["labels"] < 1, -1.0, 1.0))
    assert reg.task == "regression" and reg.label.dtype == np.float32
    content["test"]["labels"][0] = 2.0
    write(tmp_path / "humor.pkl", content)
    with pytest.raises(DataFormatError, match="labels must be 0 or 1"):
        multibench.load_multibench_affect(tmp_path, "humor")


def test_unaligned_file_gets_per_modality_lengths(tmp_path):
    rng = np.random.default_rng(2)
    steps = {"vision": 60, "audio": 70, "text": 50}
    parts = {k: make_split(4, rng, steps=steps) for k in ("train", "valid", "test")}
    write(tmp_path / "mosi_data_noalign.pkl", {k: v[0] for k, v in parts.items()})
    train = multibench.load_multibench_affect(tmp_path, "mosi", variant="mult_noalign").train
    assert train.inputs["audio"].shape == (4, 70, 4)
    np.testing.assert_array_equal(train.meta["length/audio"], parts["train"][1])
    assert set(train.meta) == {"length", "length/vision", "length/audio"}


def test_malformed_pickles(tmp_path):
    with pytest.raises(FileNotFoundError, match="sarcasm.pkl"):
        multibench.load_multibench_affect(tmp_path, "sarcasm")
    (tmp_path / "sarcasm.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        multibench.load_multibench_affect(tmp_path, "sarcasm")
    write(tmp_path / "sarcasm.pkl", {"train": {}, "test": {}})
    with pytest.raises(DataFormatError, match="train/valid/test"):
        multibench.load_multibench_affect(tmp_path, "sarcasm")
    rng = np.random.default_rng(3)
    content = {k: make_split(4, rng, sentiment=False)[0] for k in ("train", "valid", "test")}
    del content["valid"]["vision"]
    write(tmp_path / "sarcasm.pkl", content)
    with pytest.raises(DataFormatError, match=r"split 'valid': missing keys \['vision'\]"):
        multibench.load_multibench_affect(tmp_path, "sarcasm")
    content["valid"]["vision"] = np.zeros((4, T))
    write(tmp_path / "sarcasm.pkl", content)
    with pytest.raises(DataFormatError, match="'vision' has shape"):
        multibench.load_multibench_affect(tmp_path, "sarcasm")
    with pytest.raises(ValueError):
        multibench.load_multibench_affect(tmp_path, "mosi", variant="bert")
