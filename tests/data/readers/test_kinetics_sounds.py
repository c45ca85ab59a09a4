"""Tests for the Kinetics-Sounds reader (OGM-GE lists, pkl and wav layouts)."""
import pickle

import numpy as np
import pytest
from reader_fixtures import write_jpg, write_wav

from jaxmm.data.readers import audio, kinetics_sounds as ks
from jaxmm.data.readers.validate import DataFormatError


def clip_ids(n, offset=0):
    return [f"vid{offset + i:03d}xxxxx_{10 * i:06d}_{10 * i + 10:06d}" for i in range(n)]


def write_lists(root, train, test, labels_train, labels_test):
    (root / "my_train.txt").write_text("".join(f"{c},10,{y}\n" for c, y in zip(train, labels_train)))
    (root / "my_test.txt").write_text("".join(f"{c},10,{y}\r\n" for c, y in zip(test, labels_test)))


def write_pkl_layout(root, ids):
    for i, cid in enumerate(ids):
        for k in range(4):
            write_jpg(root / "visual" / cid / f"frame_0000{k}.jpg", 20 * k + i, size=(12, 12))
        spec = np.full((8, 20), float(i), np.float32)
        (root / "audio_spec").mkdir(exist_ok=True)
        with open(root / "audio_spec" / f"{cid}.pkl", "wb") as f:
            pickle.dump(spec, f)


def test_class_lists():
    assert len(ks.CLASSES_31) == 31 and len(ks.CLASSES_32) == 32
    assert list(ks.CLASSES_31) == sorted(ks.CLASSES_31)
    assert set(ks.CLASSES_32) - set(ks.CLASSES_31) == {"strumming guitar"}
    assert ks.CLASSES_31[0] == "blowing nose" and ks.CLASSES_31[-1] == "tickling"


def test_pkl_layout_values_and_splits(tmp_path):
    train, test = clip_ids(10), clip_ids(3, offset=50)
    write_pkl_layout(tmp_path, train + test)
    write_lists(tmp_path, train, test, range(10), [30, 0, 5])
    splits = ks.load_kinetics_sounds(tmp_path, image_size=8, val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 3)
    test_ds = splits.test
    np.testing.assert_array_equal(test_ds.label, [30, 0, 5])
    assert test_ds.class_names == ks.CLASSES_31 and test_ds.num_classes == 31
    assert test_ds.inputs["audio"].shape == (3, 8, 20, 1)
    np.testing.assert_array_equal(test_ds.inputs["audio"][:, 0, 0, 0], [10, 11, 12])
    # eval frames: 3 evenly spaced out of 4 -> frames 0, 2, 3 (colours 20k + i)
    means = test_ds.inputs["visual"][0].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, [10, 50, 70], atol=2)
    assert len(set(splits.train.label.tolist()) | set(splits.val.label.tolist())) == 10


def test_pkl_layout_cuts_or_pads_time_axis_and_drops_bad_files(tmp_path):
    ids = clip_ids(6)
    write_pkl_layout(tmp_path, ids)
    (tmp_path / "audio_spec" / f"{ids[0]}.pkl").unlink()
    (tmp_path / "audio_spec" / f"{ids[1]}.pkl").write_bytes(b"garbage")
    with open(tmp_path / "audio_spec" / f"{ids[2]}.pkl", "wb") as f:
        pickle.dump(np.zeros((8, 25), np.float32), f)
    for p in (tmp_path / "visual" / ids[3]).iterdir():
        p.unlink()
    write_lists(tmp_path, ids, ids[4:], [1] * 6, [2, 3])
    splits = ks.load_kinetics_sounds(tmp_path, image_size=8, val_fraction=0.0)
    assert splits.val.inputs["audio"].shape == (0, 8, 20, 1)
    assert splits.train.dropped == {"missing_audio": 1, "bad_audio": 2, "missing_frames": 1}
    assert len(splits.train) == 2
    padded = ks.load_kinetics_sounds(tmp_path, image_size=8, val_fraction=0.0, audio_frames=30)
    assert padded.train.inputs["audio"].shape == (3, 8, 30, 1)
    assert padded.train.dropped == {"missing_audio": 1, "bad_audio": 1, "missing_frames": 1}


def test_wav_layout_uses_normalised_fbank(tmp_path):
    train, test = clip_ids(2), clip_ids(1, offset=9)
    for folder, ids in (("train", train), ("test", test)):
        for cid in ids:
            write_wav(tmp_path / folder / cid / f"{cid}.wav", rate=16000, seconds=0.5)
            for k in range(3):
                write_jpg(tmp_path / folder / cid / f"frame_{k}.jpg", 100, size=(10, 10))
    write_lists(tmp_path, train, test, [3, 4], [7])
    splits = ks.load_kinetics_sounds(tmp_path, layout="wav", num_classes=32, image_size=8, val_fraction=0.0,
                                     audio_frames=64)
    spec = splits.test.inputs["audio"][0, ..., 0]
    assert spec.shape == (64, 128) and splits.test.class_names == ks.CLASSES_32
    rate, x = audio.read_wav(tmp_path / "test" / test[0] / f"{test[0]}.wav")
    fb = audio.kaldi_fbank(x - x.mean(), rate)
    np.testing.assert_allclose(spec[:len(fb)], (fb - ks.FBANK_MEAN) / (2 * ks.FBANK_STD), atol=1e-5)
    np.testing.assert_allclose(spec[len(fb):], -ks.FBANK_MEAN / (2 * ks.FBANK_STD), atol=1e-6)


@pytest.mark.parametrize("line, match", [("abc,10,31", "outside"), ("abc 10 3", "expected"), ("abc,10,x", "expected")])
def test_bad_list_lines(tmp_path, line, match):
    (tmp_path / "l.txt").write_text("ok,10,1\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"l.txt:2: .*{match}"):
        ks.read_split_list(tmp_path / "l.txt", 31)


def test_missing_list_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="my_train.txt"):
        ks.load_kinetics_sounds(tmp_path)
    with pytest.raises(ValueError):
        ks.load_kinetics_sounds(tmp_path, num_classes=34)
