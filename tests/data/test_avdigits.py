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
