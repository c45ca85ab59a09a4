"""Tests for the AV-MNIST npy reader."""
import numpy as np
import pytest

from jaxmm.data.readers import avmnist
from jaxmm.data.readers.validate import DataFormatError


def write(root, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        arrays[part] = (rng.integers(0, 256, (n, 784)).astype(np.float64),
                        rng.integers(0, 256, (n, 112, 112)).astype(np.float64), rng.integers(0, 10, n))
        np.save(root / "image" / f"{part}_data.npy", arrays[part][0])
        np.save(root / "audio" / f"{part}_data.npy", arrays[part][1])
        np.save(root / f"{part}_labels.npy", arrays[part][2])
    return arrays


def test_scaling_reshape_and_last_rows_as_validation(tmp_path):
    arrays = write(tmp_path)
    splits = avmnist.load_avmnist(tmp_path, num_val=4)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, 5)
    image, sound, label = arrays["train"]
    np.testing.assert_allclose(splits.val.inputs["image"][..., 0], image[8:].reshape(4, 28, 28) / 255, rtol=1e-6)
    np.testing.assert_allclose(splits.train.inputs["audio"][..., 0], sound[:8] / 255, rtol=1e-6)
    np.testing.assert_array_equal(splits.val.label, label[8:])
    assert splits.test.inputs["audio"].shape == (5, 112, 112, 1) and splits.test.inputs["image"].dtype == np.float32
    assert splits.num_classes == 10


def test_bad_arrays_are_named(tmp_path):
    write(tmp_path)
    np.save(tmp_path / "image" / "test_data.npy", np.zeros((5, 100)))
    with pytest.raises(DataFormatError, match=r"test_data.npy: shape \(5, 100\)"):
        avmnist.load_avmnist(tmp_path, num_val=2)
    write(tmp_path)
    np.save(tmp_path / "test_labels.npy", np.array([0, 1, 2, 3, 10]))
    with pytest.raises(DataFormatError, match="test_labels.npy: labels must be integers 0-9"):
        avmnist.load_avmnist(tmp_path, num_val=2)
    write(tmp_path)
    np.save(tmp_path / "test_labels.npy", np.arange(4))
    with pytest.raises(DataFormatError, match="disagree on N"):
        avmnist.load_avmnist(tmp_path, num_val=2)
    write(tmp_path)
    (tmp_path / "audio" / "train_data.npy").write_bytes(b"junk")
    with pytest.raises(DataFormatError, match="train_data.npy"):
        avmnist.load_avmnist(tmp_path, num_val=2)
    (tmp_path / "audio" / "train_data.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"audio/train_data.npy(.|\n)*image/\{train,test\}"):
        avmnist.load_avmnist(tmp_path, num_val=2)


def test_num_val_bounds(tmp_path):
    write(tmp_path)
    with pytest.raises(ValueError):
        avmnist.load_avmnist(tmp_path, num_val=12)
