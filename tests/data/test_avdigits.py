"""Tests for the avdigits dataset (FSDD x sklearn digits).

The pipeline is checked on a tiny synthetic FSDD-layout folder; the real-data
checks skip when the FSDD recordings are absent.
"""
import numpy as np
import pytest
from scipy.io import wavfile
from sklearn.datasets import load_digits

from jaxmm.data import avdigits
from jaxmm.data.readers import audio

DIGITS = load_digits()


def write_fake_fsdd(root, per_digit=2):
    root.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(avdigits.SPEAKERS):
        for d in range(10):
            for k in range(per_digit):
                t = np.arange(2000 + 300 * k) / 8000
                x = 0.4 * np.sin(2 * np.pi * (200 + 50 * d + 7 * s) * t)
                wavfile.write(root / f"{d}_{speaker}_{k}.wav", 8000, (x * 32767).astype(np.int16))
    return root


def check_splits(splits, test_speakers, val_speakers):
    speakers = [set(np.asarray(avdigits.SPEAKERS)[s.meta["speaker"]]) for s in (splits.train, splits.val, splits.test)]
    assert speakers[1] == set(val_speakers) and speakers[2] == set(test_speakers)
    assert speakers[0] == set(avdigits.SPEAKERS) - set(val_speakers) - set(test_speakers)
    pools = [set(s.meta["image_index"].tolist()) for s in (splits.train, splits.val, splits.test)]
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])
    for split in (splits.train, splits.val, splits.test):
        idx = split.meta["image_index"]
        np.testing.assert_array_equal(DIGITS.target[idx], split.label)
        np.testing.assert_allclose(split.inputs["image"][..., 0], DIGITS.images[idx] / 16.0, rtol=1e-6)
        assert split.modalities == ("audio", "image") and split.num_classes == 10
        assert split.inputs["audio"].shape[1:] == (32, 32, 1) and split.inputs["audio"].dtype == np.float32


def test_pipeline_on_fake_recordings(tmp_path):
    root = write_fake_fsdd(tmp_path)
    (root / "README.txt").write_text("not a recording")
    (root / "3_nobody_0.wav").write_bytes(b"")
    (root / "4_theo_9.wav").write_bytes(b"RIFF broken")
    splits = avdigits.load_avdigits(root)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 20, 40)
    assert splits.test.dropped == {"bad_audio": 1} and splits.train.dropped == {}
    check_splits(splits, avdigits.TEST_SPEAKERS, avdigits.VAL_SPEAKERS)
    train_audio = splits.train.inputs["audio"]
    assert abs(train_audio.mean()) < 1e-4 and abs(train_audio.std() - 1) < 1e-3
    # stored features are one affine standardisation of audio_features for every example
    raw = [avdigits.audio_features(*audio.read_wav(root / f"{d}_{s}_{k}.wav")[::-1])
           for d, s, k in ((0, "george", 0), (9, "yweweler", 1))]
    rows = [np.flatnonzero((splits.train.label == d) & (splits.train.meta["utterance"] == k)
                           & (splits.train.meta["speaker"] == avdigits.SPEAKERS.index(s)))[0]
            for d, s, k in ((0, "george", 0), (9, "yweweler", 1))]
    scale = (train_audio[rows[0], 0, 0, 0] - train_audio[rows[0], 5, 7, 0]) / (raw[0][0, 0] - raw[0][5, 7])
    shift = train_audio[rows[0], 0, 0, 0] - scale * raw[0][0, 0]
    np.testing.assert_allclose(train_audio[rows[1], ..., 0], scale * raw[1] + shift, rtol=1e-4, atol=1e-4)


def test_seeded_pairing_custom_speakers_and_noise(tmp_path):
    root = write_fake_fsdd(tmp_path, per_digit=1)
    a = avdigits.load_avdigits(root, seed=1)
    b = avdigits.load_avdigits(root, seed=1)
    c = avdigits.load_avdigits(root, seed=2)
    np.testing.assert_array_equal(a.train.meta["image_index"], b.train.meta["image_index"])
    assert not np.array_equal(a.train.meta["image_index"], c.train.meta["image_index"])
    custom = avdigits.load_avdigits(root, test_speakers=("george",), val_speakers=("jackson", "lucas"))
    check_splits(custom, ("george",), ("jackson", "lucas"))
    noisy = avdigits.load_avdigits(root, seed=1, image_noise_std=0.5)
    np.testing.assert_array_equal(noisy.train.label, a.train.label)
    assert np.abs(noisy.train.inputs["image"] - a.train.inputs["image"]).mean() > 0.2
    np.testing.assert_array_equal(noisy.train.inputs["audio"], a.train.inputs["audio"])


def test_bad_speaker_arguments(tmp_path):
    root = write_fake_fsdd(tmp_path, per_digit=1)
    with pytest.raises(ValueError, match="unknown"):
        avdigits.load_avdigits(root, test_speakers=("alice",))
    with pytest.raises(ValueError, match="disjoint"):
        avdigits.load_avdigits(root, test_speakers=("theo",), val_speakers=("theo",))
    with pytest.raises(ValueError, match="no speaker left"):
        avdigits.load_avdigits(root, test_speakers=avdigits.SPEAKERS[:3], val_speakers=avdigits.SPEAKERS[3:])


def test_missing_recordings_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv(avdigits.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        avdigits.load_avdigits(tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and avdigits.ENV_VAR in message and "fsdd_dir" in message
    assert "\n" not in message


def test_env_var_and_parent_folder_are_found(tmp_path, monkeypatch):
    write_fake_fsdd(tmp_path / "recordings", per_digit=1)
    assert avdigits.find_recordings(tmp_path) == tmp_path / "recordings"
    monkeypatch.setenv(avdigits.ENV_VAR, str(tmp_path))
    assert avdigits.candidate_dirs()[0] == tmp_path
    assert avdigits.find_recordings() == tmp_path / "recordings"


def test_env_var_pointing_nowhere_says_so(tmp_path, monkeypatch):
    write_fake_fsdd(tmp_path / "recordings", per_digit=1)  # a usable copy elsewhere must not be used instead
    monkeypatch.setattr(avdigits, "candidate_dirs", lambda fsdd_dir=None: [tmp_path / "recordings"])
    monkeypatch.setenv(avdigits.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"^{avdigits.ENV_VAR}={tmp_path / 'nowhere'} does not exist \(or "
                                                r"is not a folder\); point it at the 'recordings' folder of a Free "
                                                r"Spoken Digit Dataset copy, or unset it$"):
        avdigits.load_avdigits()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(avdigits.ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=rf"^{avdigits.ENV_VAR}={tmp_path / 'empty'} holds no FSDD "
                                                r"recordings .*, or unset it$"):
        avdigits.find_recordings()
    assert avdigits.find_recordings(tmp_path) == tmp_path / "recordings"  # an explicit folder wins


def test_cache_dir_reuses_built_arrays(tmp_path):
    root = write_fake_fsdd(tmp_path / "fsdd", per_digit=1)
    first = avdigits.load_avdigits(root, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("avdigits-*.npz"))) == 1
    second = avdigits.load_avdigits(root, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.test.inputs["audio"], second.test.inputs["audio"])
    assert second.test.dropped == first.test.dropped
    (root / "0_george_0.wav").unlink()  # a changed recordings folder is a new cache key
    with pytest.warns(UserWarning, match="changed since it was built"):
        third = avdigits.load_avdigits(root, cache_dir=tmp_path / "cache")
    assert len(third.train) == len(first.train) - 1


def real_recordings():
    try:
        return avdigits.find_recordings()
    except FileNotFoundError:
        return None


@pytest.mark.skipif(real_recordings() is None, reason="FSDD recordings not found (set JAXMM_FSDD_DIR "
                                                      "or keep ../shared/data/fsdd beside the checkout)")
def test_real_fsdd_split_sizes_and_pairing():
    splits = avdigits.load_avdigits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1500, 500, 1000)
    check_splits(splits, avdigits.TEST_SPEAKERS, avdigits.VAL_SPEAKERS)
    for split in (splits.train, splits.val, splits.test):
        assert np.all(np.bincount(split.label, minlength=10) == len(split) // 10)
        assert split.dropped == {}


def content_mask(x):
    """``[N, T]`` whether each step has a non-zero feature."""
    return np.any(x != 0, axis=-1)


@pytest.fixture(scope="module")
def seq_root(tmp_path_factory):
    return write_fake_fsdd(tmp_path_factory.mktemp("seq"), per_digit=2)


def test_sequence_variant_layout_lengths_and_values(seq_root):
    splits = avdigits.load_avdigits(seq_root, sequence=True, max_steps=8)
    for split in (splits.train, splits.val, splits.test):
        x, lengths = split.inputs["audio"], split.meta["length/audio"]
        assert x.shape == (len(split), 8, 32) and x.dtype == np.float32
        # fake recordings have 2000 + 300 k samples: 1 + n // 256 centred frames, cut to max_steps
        np.testing.assert_array_equal(lengths, np.minimum(1 + (2000 + 300 * split.meta["utterance"]) // 256, 8))
        assert set(lengths.tolist()) == {8} or split is not splits.train  # k = 1 (9 frames) is cut to 8
        mask = content_mask(x)
        np.testing.assert_array_equal(mask, np.arange(8)[None] >= 8 - lengths[:, None])  # left padded, no gap
        assert np.all(x[~mask] == 0)
        idx = split.meta["image_index"]
        np.testing.assert_allclose(split.inputs["image"], DIGITS.images[idx] / 16.0, rtol=1e-6)
        assert split.task == "classification" and split.num_classes == 10
    short = avdigits.load_avdigits(seq_root, sequence=True, max_steps=12)
    lengths = short.train.meta["length/audio"]
    np.testing.assert_array_equal(lengths, 1 + (2000 + 300 * short.train.meta["utterance"]) // 256)
    assert set(lengths.tolist()) == {8, 9}
    np.testing.assert_array_equal((~content_mask(short.train.inputs["audio"])).sum(1), 12 - lengths)
    # content = per-band standardisation (train mean/std over real steps, float64 reference) of the raw steps
    raw = [avdigits.sequence_features(*audio.read_wav(seq_root / f"{d}_{avdigits.SPEAKERS[s]}_{k}.wav")[::-1], 12)
           for d, s, k in zip(short.train.label, short.train.meta["speaker"], short.train.meta["utterance"])]
    steps = np.concatenate(raw).astype(np.float64)
    mean, std = steps.mean(0), steps.std(0)
    for i in (0, len(raw) - 1):
        np.testing.assert_allclose(short.train.inputs["audio"][i, 12 - len(raw[i]):], (raw[i] - mean) / std,
                                   rtol=1e-4, atol=1e-4)


def test_left_pad_nudges_all_zero_steps():
    seqs = [np.array([[0.0, 0.0], [1.0, 0.0]], np.float32), np.array([[2.0, 3.0]], np.float32)]
    nudge = np.float32(avdigits.NUDGE)
    np.testing.assert_array_equal(avdigits.left_pad(seqs, 3),
                                  np.array([[[0, 0], [nudge, nudge], [1, 0]], [[0, 0], [0, 0], [2, 3]]], np.float32))


def relabelled_copy(src, dst):
    """The same recordings, the zeros renamed as ones (utterance index + 5): other labels, same sizes."""
    dst.mkdir()
    for path in src.glob("*.wav"):
        d, speaker, k = path.stem.split("_")
        name = f"1_{speaker}_{int(k) + 5}.wav" if d == "0" else path.name
        (dst / name).write_bytes(path.read_bytes())
    return dst


def test_value_target_and_noise_modality(tmp_path):
    root = write_fake_fsdd(tmp_path / "a", per_digit=1)  # equal lengths: noise lengths are order-free
    plain = avdigits.load_avdigits(root, sequence=True, max_steps=10, seed=3)
    noisy = avdigits.load_avdigits(root, sequence=True, max_steps=10, seed=3, target="value", noise_modality=True)
    again = avdigits.load_avdigits(root, sequence=True, max_steps=10, seed=3, target="value", noise_modality=True)
    other = avdigits.load_avdigits(relabelled_copy(root, tmp_path / "b"), sequence=True, max_steps=10, seed=3,
                                   target="value", noise_modality=True)
    reseeded = avdigits.load_avdigits(root, sequence=True, max_steps=10, seed=4, noise_modality=True)
    for name in ("train", "val", "test"):
        p, n, a, o = (getattr(s, name) for s in (plain, noisy, again, other))
        assert n.task == "regression" and n.num_classes == 1 and n.label.dtype == np.float32
        np.testing.assert_array_equal(n.label, p.label.astype(np.float32))  # the value is the class id
        assert n.modalities == ("audio", "image", "noise")
        for m in ("audio", "image"):  # the extra modality leaves the others (and the pairing) alone
            np.testing.assert_array_equal(n.inputs[m], p.inputs[m])
        noise, lengths = n.inputs["noise"], n.meta["length/noise"]
        assert noise.shape == p.inputs["audio"].shape and set(lengths.tolist()) == {8}
        np.testing.assert_array_equal(content_mask(noise), np.arange(10)[None] >= 10 - lengths[:, None])
        np.testing.assert_array_equal(noise, a.inputs["noise"])  # determined by the seed
        # independent of the label: other labels (same recordings), the same noise
        assert not np.array_equal(o.label, n.label)
        np.testing.assert_array_equal(o.inputs["noise"], noise)
    assert not np.array_equal(reseeded.train.inputs["noise"], noisy.train.inputs["noise"])
    content = noisy.train.inputs["noise"][content_mask(noisy.train.inputs["noise"])]
    assert abs(content.mean()) < 0.05 and abs(content.std() - 1) < 0.05
    dense = avdigits.load_avdigits(root, noise_modality=True, target="value")
    assert dense.train.inputs["noise"].shape == dense.train.inputs["audio"].shape == (30, 32, 32, 1)
    assert "length/noise" not in dense.train.meta and dense.train.task == "regression"


def test_sequence_options_are_checked_and_reach_the_registry(tmp_path):
    root = write_fake_fsdd(tmp_path, per_digit=1)
    with pytest.raises(ValueError, match="unknown target 'digit'"):
        avdigits.load_avdigits(root, target="digit")
    with pytest.raises(ValueError, match="max_steps must be a positive int"):
        avdigits.load_avdigits(root, sequence=True, max_steps=0)
    from jaxmm.data.registry import load_dataset

    splits = load_dataset("avdigits", 0, data_dir=str(root), sequence=True, max_steps=9, target="value")
    assert splits.train.inputs["audio"].shape == (30, 9, 32) and splits.task == "regression"
