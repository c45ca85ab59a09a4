"""Tests for the CREMA-D reader on a tiny fixture in the release + OGM-GE layout."""
import sys

import numpy as np
import pytest
from reader_fixtures import crema_names, truncate, write_crema_csv, write_crema_d

from jaxmm.data.readers import audio, crema_d
from jaxmm.data.readers.validate import DataFormatError

NAMES = crema_names()  # 12 actors x 6 emotions


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("crema")
    write_crema_d(root, NAMES)
    write_crema_csv(root / "train.csv", NAMES[:10], bom=True, crlf=True)
    write_crema_csv(root / "test.csv", NAMES[10:14], bom=False, crlf=False)
    return root


def load(root, **kw):
    kw = {"image_size": 16, "num_frames": 2, **kw}
    return crema_d.load_crema_d(root, **kw)


def test_ogm_csv_split_sizes_labels_and_values(root):
    splits = load(root, val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 4)
    test = splits.test
    assert test.class_names == ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG") and test.num_classes == 6
    assert test.inputs["audio"].shape == (4, 257, 188, 1) and test.inputs["visual"].shape == (4, 2, 16, 16, 3)
    expected_labels = [("NEU", "HAP", "SAD", "FEA", "DIS", "ANG").index(n.split("_")[2]) for n in NAMES[10:14]]
    np.testing.assert_array_equal(test.label, expected_labels)
    np.testing.assert_array_equal(test.meta["actor"], [int(n[:4]) for n in NAMES[10:14]])
    rate, x = audio.read_wav(root / "AudioWAV" / f"{NAMES[10]}.wav")
    np.testing.assert_allclose(test.inputs["audio"][0, ..., 0], audio.ogm_audio_features(x, rate), atol=1e-5)
    # eval frames are the first T sorted frames; fixture colour = (10k + 3i) % 250 for clip i, frame k
    for k in range(2):
        assert abs(float(test.inputs["visual"][0, k].mean()) - (10 * k + 30)) < 2
    assert splits.train.dropped == {} and splits.test.dropped == {}


def test_val_carve_out_is_seeded_and_disjoint(root):
    a, b = load(root, val_fraction=0.2, seed=3), load(root, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(a.val.inputs["audio"], b.val.inputs["audio"])
    empty = load(root, val_fraction=0.0)
    assert len(empty.val) == 0 and empty.val.inputs["visual"].shape == (0, 2, 16, 16, 3)
    assert len(empty.train) == 10


def test_tfds_label_order(root):
    test = load(root, label_order="tfds", val_fraction=0.0).test
    assert test.class_names == ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")
    emotions = [n.split("_")[2] for n in NAMES[10:14]]
    np.testing.assert_array_equal(test.label, [test.class_names.index(e) for e in emotions])


def test_speaker_independent_split_by_actor(root):
    splits = load(root, split="speaker_independent", num_frames=1)
    actors = [set(s.meta["actor"].tolist()) for s in (splits.train, splits.val, splits.test)]
    assert [len(a) for a in actors] == [8, 1, 3]  # int(0.7*12), int(0.8*12) - 8, rest
    assert not (actors[0] & actors[1] or actors[0] & actors[2] or actors[1] & actors[2])
    assert (len(splits.train), len(splits.val), len(splits.test)) == (48, 6, 18)


def test_speaker_split_matches_tfds_proportions():
    actors = range(1001, 1092)
    parts = crema_d.speaker_split(actors)
    assert [len(p) for p in parts] == [63, 9, 19]
    assert set().union(*parts) == {str(a) for a in actors}
    assert parts == crema_d.speaker_split(reversed(actors))
    assert parts != crema_d.speaker_split(actors, seed=1)
    with pytest.raises(ValueError):
        crema_d.speaker_split(actors, (0.5, 0.4))


def test_train_frames_random_but_seeded(root):
    a = load(root, val_fraction=0.0, train_frames="random", seed=1).train.inputs["visual"]
    b = load(root, val_fraction=0.0, train_frames="random", seed=1).train.inputs["visual"]
    first = load(root, val_fraction=0.0, train_frames="first").train.inputs["visual"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, first)


def test_read_split_csv_tolerates_bom_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbf1001_DFA_ANG_XX,ANG\r\n\r\n1002_IEO_HAP_HI,HAP\r\n")
    clips = crema_d.read_split_csv(path)
    assert [c.name for c in clips] == ["1001_DFA_ANG_XX", "1002_IEO_HAP_HI"]
    assert clips[1] == crema_d.Clip("1002_IEO_HAP_HI", 1002, "IEO", "HAP", "HI")


@pytest.mark.parametrize("line, match", [
    ("1001_DFA_ANG_XX,XYZ", "not one of"),
    ("1001_DFA_ANG_XX,HAP", "contradicts"),
    ("1001_DFA_ANG_XX", "expected"),
    ("10x1_DFA_ANG_XX,ANG", "not a CREMA-D clip name"),
])
def test_read_split_csv_rejects_malformed_lines(tmp_path, line, match):
    path = tmp_path / "bad.csv"
    path.write_text("1002_DFA_NEU_XX,NEU\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"bad.csv:2: .*{match}"):
        crema_d.read_split_csv(path)


def test_missing_split_file_and_root_name_the_layout(root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train.csv(.|\n)*AudioWAV"):
        load(root, split_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="root folder"):
        load(tmp_path / "nowhere")


def test_bad_media_are_dropped_and_counted(tmp_path):
    names = crema_names(actors=(1001, 1002))
    write_crema_d(tmp_path, names)
    (tmp_path / "AudioWAV" / f"{names[0]}.wav").unlink()
    for f in (tmp_path / "Image-01-FPS" / names[1]).iterdir():
        f.unlink()
    truncate(tmp_path / "AudioWAV" / f"{names[2]}.wav", 60)
    (tmp_path / "Image-01-FPS" / names[3] / "00001.jpg").write_bytes(b"not a jpeg")
    write_crema_csv(tmp_path / "train.csv", names[:8])
    write_crema_csv(tmp_path / "test.csv", names[8:])
    splits = load(tmp_path, val_fraction=0.0)
    assert splits.train.dropped == {"missing_audio": 1, "missing_frames": 1, "bad_audio": 1, "bad_image": 1}
    assert len(splits.train) == 4 and len(splits.test) == 4
    with pytest.raises(FileNotFoundError, match=names[0]):
        load(tmp_path, val_fraction=0.0, strict=True)


def test_split_with_no_loadable_clip_raises(tmp_path):
    names = crema_names(actors=(1001,))
    write_crema_d(tmp_path, names)
    write_crema_csv(tmp_path / "train.csv", names)
    write_crema_csv(tmp_path / "test.csv", ["1050_DFA_NEU_XX"])
    with pytest.raises(DataFormatError, match="crema_d/test: none of the 1"):
        load(tmp_path, val_fraction=0.0)


def test_flv_without_av_names_the_video_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="video"):
        crema_d.decode_video_frames(tmp_path / "x.flv")


def test_flv_frames_when_av_is_installed(tmp_path):
    av = pytest.importorskip("av", reason="the optional 'video' extra (av) is not installed")
    path = tmp_path / "clip.flv"
    with av.open(str(path), "w", format="flv") as container:
        stream = container.add_stream("flv", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for i in range(25):  # 2.5 s at 10 fps
            image = np.full((24, 32, 3), 40 * (i // 10), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    decoded = crema_d.decode_video_frames(path, fps=1.0)
    assert len(decoded) == 3 and decoded[0].shape == (24, 32, 3)
    np.testing.assert_allclose([f.mean() for f in decoded], [0, 40, 80], atol=3)
    (tmp_path / "junk.flv").write_bytes(b"junk")
    with pytest.raises(DataFormatError, match="junk.flv"):
        crema_d.decode_video_frames(tmp_path / "junk.flv")
