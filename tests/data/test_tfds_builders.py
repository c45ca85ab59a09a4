"""The tfds builders write what jaxmm's readers read, and ``tfds.data_source`` gives it back."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")

from reader_fixtures import crema_names, write_crema_csv, write_crema_d  # noqa: E402
from test_avdigits import write_fake_fsdd  # noqa: E402

from jaxmm.data import tfds_builders  # noqa: E402
from jaxmm.data.avdigits import load_avdigits  # noqa: E402
from jaxmm.data.readers.crema_d import load_crema_d  # noqa: E402


def assert_same_split(got, want):
    assert got.modalities == want.modalities and got.num_classes == want.num_classes
    np.testing.assert_array_equal(got.label, want.label)
    for m in want.modalities:
        assert got.inputs[m].dtype == want.inputs[m].dtype
        np.testing.assert_array_equal(got.inputs[m], want.inputs[m])


def test_avdigits_roundtrip_through_data_source(tmp_path):
    fsdd = write_fake_fsdd(tmp_path / "fsdd", per_digit=1)
    tfds_builders.prepare("avdigits", tmp_path / "tfds", fsdd)
    source = tfds.data_source("jaxmm_avdigits", data_dir=str(tmp_path / "tfds"))
    want = load_avdigits(fsdd)
    assert {k: len(v) for k, v in source.items()} == {"train": 30, "val": 10, "test": 20}
    row = source["test"][0]
    np.testing.assert_array_equal(row["image"], want.test.inputs["image"][row["index"]])
    got = tfds_builders.load_splits("avdigits", tmp_path / "tfds")
    for name in ("train", "val", "test"):
        assert_same_split(getattr(got, name), getattr(want, name))


def test_crema_d_ogm_csv_config(tmp_path):
    names = crema_names(actors=range(1001, 1004))
    write_crema_d(tmp_path / "crema", names, frames_per_clip=1)
    write_crema_csv(tmp_path / "crema" / "train.csv", names[:12])
    write_crema_csv(tmp_path / "crema" / "test.csv", names[12:])
    tfds_builders.prepare("crema_d", tmp_path / "tfds", tmp_path / "crema")
    got = tfds_builders.load_splits("crema_d", tmp_path / "tfds", config="ogm_csv")
    want = load_crema_d(tmp_path / "crema", split="ogm_csv", num_frames=1)
    for name in ("train", "val", "test"):
        assert_same_split(getattr(got, name), getattr(want, name))
    assert got.train.inputs["visual"].shape[1:] == (1, 224, 224, 3)


def test_bad_requests_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="no tfds builder for 'mnist'; available"):
        tfds_builders.prepare("mnist", tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="manual directory .* does not exist.*FSDD"):
        tfds_builders.prepare("avdigits", tmp_path / "tfds", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no config 'big'; available: \\['ogm_csv', 'speaker_independent'\\]"):
        tfds_builders.load_splits("crema_d", tmp_path, config="big")
