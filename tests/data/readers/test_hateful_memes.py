"""Tests for the Hateful Memes jsonl + image reader."""
import json

import numpy as np
import pytest
from reader_fixtures import write_jpg

from jaxmm.data.readers import hateful_memes as hm
from jaxmm.data.readers.validate import DataFormatError


def write_split(root, name, ids, labelled=True):
    lines = []
    for i in ids:
        record = {"id": i, "img": f"img/{i:05d}.png", "text": f"meme {i}"}
        if labelled:
            record["label"] = i % 2
        lines.append(json.dumps(record))
    (root / name).write_text("\n".join(lines) + "\n")


def make(root, phase2=True):
    for i in range(12):
        write_jpg(root / "img" / f"{i:05d}.png", 20 * i, size=(20, 30))
    write_split(root, "train.jsonl", range(6))
    write_split(root, "dev_seen.jsonl" if phase2 else "dev.jsonl", range(6, 9))
    write_split(root, "test_seen.jsonl" if phase2 else "test.jsonl", range(9, 12), labelled=phase2)


def test_phase2_images_texts_labels(tmp_path):
    make(tmp_path)
    splits = hm.load_hateful_memes(tmp_path, image_size=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 3)
    train = splits.train
    np.testing.assert_array_equal(train.label, [0, 1, 0, 1, 0, 1])
    assert train.inputs["image"].shape == (6, 8, 8, 3)
    np.testing.assert_allclose(train.inputs["image"].mean(axis=(1, 2, 3)), 20 * np.arange(6), atol=1)
    assert list(train.inputs["text"]) == [f"meme {i}" for i in range(6)]
    assert train.class_names == ("not_hateful", "hateful") and train.meta["has_label"].all()


def test_phase1_unlabelled_test_and_text_encoder(tmp_path):
    make(tmp_path, phase2=False)
    encoder = lambda texts: np.array([[len(t)] for t in texts], np.float32)
    splits = hm.load_hateful_memes(tmp_path, image_size=8, text_encoder=encoder)
    np.testing.assert_array_equal(splits.test.label, -1)
    assert not splits.test.meta["has_label"].any()
    np.testing.assert_array_equal(splits.val.inputs["text"], [[6], [6], [6]])


def test_missing_and_unreadable_images_are_dropped(tmp_path):
    make(tmp_path)
    (tmp_path / "img" / "00001.png").unlink()
    (tmp_path / "img" / "00002.png").write_bytes(b"junk")
    train = hm.load_hateful_memes(tmp_path, image_size=8).train
    assert train.dropped == {"missing_image": 1, "bad_image": 1} and len(train) == 4
    with pytest.raises(FileNotFoundError, match="00001.png"):
        hm.load_hateful_memes(tmp_path, image_size=8, strict=True)


@pytest.mark.parametrize("line, match", [
    ('{"id": 1, "img": "img/00001.png", "text": "x", "label": 2}', "not 0 or 1"),
    ('{"id": 1, "text": "x"}', "'img' and 'text'"),
    ('{"id": 1, "img": ', "invalid JSON"),
])
def test_malformed_jsonl(tmp_path, line, match):
    (tmp_path / "a.jsonl").write_text('{"id": 0, "img": "img/0.png", "text": "ok"}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=rf"a.jsonl:2: .*{match}"):
        hm.read_jsonl(tmp_path / "a.jsonl")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        hm.load_hateful_memes(tmp_path)
