"""Tests for jaxmm.data.readers.frames: image decoding, frame choice, transforms."""
import numpy as np
import pytest
from reader_fixtures import truncate, write_jpg

from jaxmm.data.readers import frames
from jaxmm.data.readers.validate import DataFormatError


def test_read_image_decodes_resizes_and_converts(tmp_path):
    write_jpg(tmp_path / "a.jpg", 100, size=(24, 32))
    img = frames.read_image(tmp_path / "a.jpg")
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    assert abs(int(img.mean()) - 100) <= 2
    assert frames.read_image(tmp_path / "a.jpg", 16).shape == (16, 16, 3)
    assert frames.read_image(tmp_path / "a.jpg", (8, 12), mode="L").shape == (8, 12)


def test_read_image_errors_name_the_file(tmp_path):
    write_jpg(tmp_path / "t.jpg", 100, size=(64, 64))
    truncate(tmp_path / "t.jpg", 200)
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    for name in ("t.jpg", "x.jpg"):
        with pytest.raises(DataFormatError, match=name):
            frames.read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        frames.read_image(tmp_path / "missing.jpg")


def test_choose_frames_modes():
    np.testing.assert_array_equal(frames.choose_frames(5, 3, "first"), [0, 1, 2])
    np.testing.assert_array_equal(frames.choose_frames(5, 3, "uniform"), [0, 2, 4])
    np.testing.assert_array_equal(frames.choose_frames(2, 3, "first"), [0, 1, 0])
    rng = np.random.default_rng(0)
    picks = {tuple(frames.choose_frames(6, 3, "random", rng)) for _ in range(30)}
    assert len(picks) > 1 and all(list(p) == sorted(set(p)) for p in picks)
    with pytest.raises(ValueError):
        frames.choose_frames(6, 3, "random")
    with pytest.raises(ValueError):
        frames.choose_frames(6, 3, "middle")


def test_list_frames_sorted(tmp_path):
    for k in (3, 1, 2):
        write_jpg(tmp_path / f"{k:05d}.jpg", k)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in frames.list_frames(tmp_path)] == ["00001.jpg", "00002.jpg", "00003.jpg"]


def test_normalize_uses_imagenet_statistics():
    x = np.full((2, 2, 3), 255, np.uint8)
    np.testing.assert_allclose(frames.normalize(x)[0, 0], (1 - frames.IMAGENET_MEAN) / frames.IMAGENET_STD, rtol=1e-6)


def test_random_resized_crop_box_is_valid_and_seeded():
    for seed in range(20):
        top, left, h, w = frames.random_resized_crop_box(30, 40, np.random.default_rng(seed))
        assert 0 < h <= 30 and 0 < w <= 40 and top + h <= 30 and left + w <= 40
        assert h * w >= 0.08 * 1200 * 0.9
    a = frames.random_resized_crop_box(30, 40, np.random.default_rng(5))
    assert a == frames.random_resized_crop_box(30, 40, np.random.default_rng(5))


def test_augment_shapes_flips_and_reproducibility():
    batch = np.zeros((2, 3, 20, 20, 3), np.uint8)
    batch[..., :10, :] = 255  # left half white
    out = frames.augment(batch, np.random.default_rng(0), size=16)
    assert out.shape == (2, 3, 16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, frames.augment(batch, np.random.default_rng(0), size=16))
    flipped = frames.augment(batch, np.random.default_rng(1), flip_prob=1.0)
    kept = frames.augment(batch, np.random.default_rng(1), flip_prob=0.0)
    np.testing.assert_allclose(flipped, kept[..., ::-1, :])


def test_crop_flip_stays_uint8_and_augment_is_its_normalisation():
    batch = np.random.default_rng(2).integers(0, 256, (2, 3, 20, 20, 3), dtype=np.uint8)
    cropped = frames.crop_flip(batch, np.random.default_rng(7), size=16)
    assert cropped.dtype == np.uint8 and cropped.shape == (2, 3, 16, 16, 3)
    np.testing.assert_array_equal(frames.augment(batch, np.random.default_rng(7), size=16),
                                  frames.normalize(cropped))
    with pytest.raises(ValueError, match=r"needs uint8 RGB frames \[..., H, W, 3\].*float32 \(2, 3, 20, 20, 3\)"):
        frames.crop_flip(batch.astype(np.float32), np.random.default_rng(0))
