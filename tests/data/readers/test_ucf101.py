"""Tests for the UCF101 RGB + optical-flow reader (two-stream and denseflow naming)."""
import numpy as np
import pytest
from reader_fixtures import write_jpg

from jaxmm.data.readers import ucf101
from jaxmm.data.readers.validate import DataFormatError

CLASSES = "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n"
TRAIN = [("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 1), ("HandstandPushups/v_HandStandPushups_g09_c02.avi", 2),
         ("YoYo/v_YoYo_g10_c01.avi", 3), ("YoYo/v_YoYo_g11_c03.avi", 3)]
TEST = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandstandPushups/v_HandStandPushups_g02_c01.avi"]


def write_lists(root):
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text(CLASSES)
    (lists / "trainlist01.txt").write_text("".join(f"{p} {y}\n" for p, y in TRAIN))
    (lists / "testlist01.txt").write_text("".join(f"{p}\n" for p in TEST))


def write_video(root, video, layout, n_rgb=5, n_flow=4):
    t = ucf101.TEMPLATES[layout]
    for i in range(1, n_rgb + 1):
        write_jpg(root / t["rgb"].format(video=video, index=i), 10 * i, size=(12, 16))
    for i in range(1, n_flow + 1):
        write_jpg(root / t["flow_u"].format(video=video, index=i), 100 + i, size=(12, 16), mode="L")
        write_jpg(root / t["flow_v"].format(video=video, index=i), 150 + i, size=(12, 16), mode="L")


def make(root, layout):
    write_lists(root)
    for path in [p for p, _ in TRAIN] + TEST:
        stem = path.split("/")[1][:-4].replace("HandStand", "Handstand")  # files disagree in case
        write_video(root, stem, layout)


@pytest.mark.parametrize("layout", ["two_stream", "denseflow"])
def test_rgb_and_interleaved_flow_values(tmp_path, layout):
    make(tmp_path, layout)
    splits = ucf101.load_ucf101(tmp_path, layout=layout, num_frames=2, flow_length=2, image_size=8, val_groups=1)
    test = splits.test
    assert test.class_names == ("ApplyEyeMakeup", "HandstandPushups", "YoYo")
    np.testing.assert_array_equal(test.label, [0, 1])
    assert test.inputs["rgb"].shape == (2, 2, 8, 8, 3) and test.inputs["flow"].shape == (2, 8, 8, 4)
    np.testing.assert_allclose(test.inputs["rgb"][0].mean(axis=(1, 2, 3)), [10, 50], atol=2)  # frames 1 and 5
    np.testing.assert_allclose(test.inputs["flow"][1].mean(axis=(0, 1)), [102, 152, 103, 153], atol=2)  # centred
    assert len(splits.train) + len(splits.val) == 4 and len(splits.val) >= 1
    assert splits.train.dropped == {} and splits.test.dropped == {}


def test_validation_holds_out_whole_groups(tmp_path):
    make(tmp_path, "two_stream")
    a = ucf101.load_ucf101(tmp_path, image_size=8, flow_length=1, val_groups=2, seed=3)
    b = ucf101.load_ucf101(tmp_path, image_size=8, flow_length=1, val_groups=2, seed=3)
    assert len(a.val) == 2 and len(a.train) == 2
    np.testing.assert_array_equal(a.val.label, b.val.label)


def test_flow_to_float():
    np.testing.assert_allclose(ucf101.flow_to_float(np.array([0, 128, 255], np.uint8)), [-1, 0, 127 / 128])


def test_missing_flow_and_bad_frames_are_dropped(tmp_path):
    make(tmp_path, "two_stream")
    for p in (tmp_path / "tvl1_flow" / "u" / "v_YoYo_g10_c01").iterdir():
        p.unlink()
    (tmp_path / "jpegs_256" / "v_YoYo_g11_c03" / "frame000003.jpg").write_bytes(b"junk")
    splits = ucf101.load_ucf101(tmp_path, image_size=8, num_frames=5, flow_length=1, val_groups=0)
    assert splits.train.dropped == {"missing_frames": 1, "bad_image": 1}
    with pytest.raises(FileNotFoundError, match="v_YoYo_g10_c01"):
        ucf101.load_ucf101(tmp_path, image_size=8, flow_length=1, val_groups=0, strict=True)


@pytest.mark.parametrize("classes, train, match", [
    ("1 A\n3 B\n", "A/v_A_g01_c01.avi 1\n", "without gaps"),
    ("1 A\nB\n", "A/v_A_g01_c01.avi 1\n", "expected"),
    ("1 A\n2 B\n", "A/v_A_g01_c01.avi 3\n", "outside"),
    ("1 A\n2 B\n", "C/v_C_g01_c01.avi 1\n", "not in classInd"),
])
def test_malformed_lists(tmp_path, classes, train, match):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text(classes)
    (lists / "trainlist01.txt").write_text(train)
    (lists / "testlist01.txt").write_text("A/v_A_g02_c01.avi\n")
    with pytest.raises(DataFormatError, match=match):
        ucf101.load_ucf101(tmp_path)


def test_missing_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        ucf101.load_ucf101(tmp_path)
