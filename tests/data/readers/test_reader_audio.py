"""Tests for jaxmm.data.readers.audio: wav reading, STFT conventions, features."""
import numpy as np
import pytest
from reader_fixtures import truncate, write_wav
from scipy.io import wavfile

from jaxmm.data.readers import audio
from jaxmm.data.readers.validate import DataFormatError


def test_read_wav_scales_int16_and_averages_channels(tmp_path):
    expected = write_wav(tmp_path / "a.wav", rate=8000, seconds=0.1)
    rate, x = audio.read_wav(tmp_path / "a.wav")
    assert rate == 8000 and x.dtype == np.float32
    np.testing.assert_allclose(x, expected)
    stereo = np.stack([np.full(10, 16384, np.int16), np.zeros(10, np.int16)], axis=1)
    wavfile.write(tmp_path / "s.wav", 8000, stereo)
    np.testing.assert_allclose(audio.read_wav(tmp_path / "s.wav")[1], 0.25)


@pytest.mark.parametrize("keep", [30, 100])
def test_read_wav_rejects_truncated_files(tmp_path, keep):
    write_wav(tmp_path / "a.wav", seconds=0.1)
    truncate(tmp_path / "a.wav", keep)
    with pytest.raises(DataFormatError, match="a.wav"):
        audio.read_wav(tmp_path / "a.wav")


def test_read_wav_rejects_garbage_and_empty_and_reports_missing(tmp_path):
    (tmp_path / "g.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(DataFormatError, match="g.wav"):
        audio.read_wav(tmp_path / "g.wav")
    wavfile.write(tmp_path / "e.wav", 8000, np.zeros(0, np.int16))
    with pytest.raises(DataFormatError, match="no samples"):
        audio.read_wav(tmp_path / "e.wav")
    with pytest.raises(FileNotFoundError):
        audio.read_wav(tmp_path / "missing.wav")


def test_stft_matches_direct_dft_of_a_centred_reflect_padded_frame():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).astype(np.float32)
    n_fft, hop = 512, 353
    spec = audio.stft(x, n_fft, hop)
    assert spec.shape == (257, 1 + 3000 // hop)
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_fft // 2 + 1)[:, None]
    dft = np.exp(-2j * np.pi * k * n[None] / n_fft)
    for t in (0, 4, spec.shape[1] - 1):
        frame = padded[t * hop: t * hop + n_fft] * window
        np.testing.assert_allclose(spec[:, t], dft @ frame, rtol=1e-4, atol=1e-3)


def test_stft_constant_padding_differs_only_at_edges():
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    a, b = audio.stft(x, 256, 64), audio.stft(x, 256, 64, pad_mode="constant")
    np.testing.assert_allclose(a[:, 2:-2], b[:, 2:-2], rtol=1e-5, atol=1e-4)
    assert not np.allclose(a[:, 0], b[:, 0])


def test_ogm_features_shape_tiling_and_values():
    rate = 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * rate)) / rate)).astype(np.float32)
    feats = audio.ogm_audio_features(x, rate)
    assert feats.shape == (257, 188) and feats.dtype == np.float32
    y = audio.tile_to_length(audio.resample(x, rate, 22050), 66150)
    np.testing.assert_allclose(feats, np.log(np.abs(audio.stft(y, 512, 353)) + 1e-7), rtol=1e-5, atol=1e-5)
    assert np.argmax(feats[:, 90]) == round(440 / (22050 / 512))
    short = audio.ogm_audio_features(x[:4000], rate)  # 0.25 s: tiled beyond 3x
    assert short.shape == (257, 188)


def test_tile_and_clip_follow_ogm_recipe():
    np.testing.assert_array_equal(audio.tile_to_length(np.arange(3.0), 7), [0, 1, 2, 0, 1, 2, 0])
    loud = np.full(22050, 3.0, np.float32)
    clipped = audio.ogm_audio_features(loud, 22050)
    np.testing.assert_allclose(clipped, audio.ogm_audio_features(np.ones(22050, np.float32), 22050), atol=1e-5)


def test_area_pool_matrix_pools_and_stretches():
    w = audio.area_pool_matrix(6, 3)
    np.testing.assert_allclose(w @ np.arange(6.0), [0.5, 2.5, 4.5])
    up = audio.area_pool_matrix(2, 4)
    np.testing.assert_allclose(up @ np.array([1.0, 3.0]), [1, 1, 3, 3])
    np.testing.assert_allclose(audio.area_pool_matrix(129, 32).sum(1), 1.0, rtol=1e-6)


def test_kaldi_fbank_matches_one_frame_computed_directly():
    rate = 16000
    x = np.random.default_rng(2).standard_normal(rate // 2)
    fb = audio.kaldi_fbank(x, rate)
    assert fb.shape == (1 + (8000 - 400) // 160, 128)
    t = 3
    frame = x[t * 160: t * 160 + 400].astype(np.float64)
    frame = frame - frame.mean()
    frame = frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)
    power = np.abs(np.fft.rfft(frame * window, n=512)) ** 2
    mel = lambda f: 1127 * np.log(1 + f / 700)
    edges = np.linspace(mel(20), mel(8000), 130)
    f_mel = mel(np.arange(257) * rate / 512)
    expected = []
    for b in range(128):
        tri = np.clip(np.minimum((f_mel - edges[b]) / (edges[b + 1] - edges[b]),
                                 (edges[b + 2] - f_mel) / (edges[b + 2] - edges[b + 1])), 0, None)
        tri[-1] = 0.0
        expected.append(np.log(max(tri @ power, np.finfo(np.float32).eps)))
    np.testing.assert_allclose(fb[t], expected, rtol=1e-4, atol=1e-4)
