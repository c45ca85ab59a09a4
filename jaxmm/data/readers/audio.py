"""Audio reading and spectrogram features in numpy/scipy (no librosa).

Conventions follow librosa's ``stft``: centred frames (the signal is padded by
``n_fft // 2`` on both sides, reflect padding as in librosa < 0.10, whose
default is the OGM-GE feature convention), a periodic Hann window, output
``[1 + n_fft // 2, 1 + len(x) // hop]``. Resampling uses
``scipy.signal.resample_poly`` (librosa's ``load`` uses soxr), so resampled
features agree with librosa's to resampling precision, not bit for bit.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

from jaxmm.data.readers.validate import DataFormatError

OGM_RATE = 22050
OGM_SECONDS = 3.0
OGM_N_FFT = 512
OGM_HOP = 353


def read_wav(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """Reads a PCM/float wav file as mono float32 in ``[-1, 1]``.

    Args:
      path: the ``.wav`` file.

    Returns:
      ``(sample_rate, samples [n] float32)``; multi-channel files are averaged.

    Raises:
      FileNotFoundError: if the file does not exist.
      DataFormatError: if it is not a wav file, is truncated, or has no samples.
    """
    from scipy.io import wavfile  # imported when needed: 0.1 s of every jaxmm start otherwise

    with warnings.catch_warnings():
        warnings.simplefilter("error", wavfile.WavFileWarning)
        try:
            rate, data = wavfile.read(path)
        except FileNotFoundError:
            raise
        except Exception as e:  # scipy raises ValueError, struct.error, EOFError or the warning
            raise DataFormatError(f"unreadable or truncated wav file {path}: {e}") from e
    if data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    else:
        data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0:
        raise DataFormatError(f"wav file {path} has no samples")
    return int(rate), data


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal to ``target_rate`` (float32)."""
    if orig_rate == target_rate:
        return x.astype(np.float32)
    g = math.gcd(int(orig_rate), int(target_rate))
    from scipy import signal  # imported when needed: 0.7 s of every jaxmm start otherwise

    return signal.resample_poly(x, target_rate // g, orig_rate // g).astype(np.float32)


def tile_to_length(x: np.ndarray, length: int) -> np.ndarray:
    """Repeats ``x`` end to end and cuts it to exactly ``length`` samples."""
    reps = -(-length // len(x))
    return np.tile(x, reps)[:length]


def stft(x: np.ndarray, n_fft: int, hop_length: int, *, center: bool = True,
         pad_mode: str = "reflect") -> np.ndarray:
    """Short-time Fourier transform with librosa's framing conventions.

    Args:
      x: ``[n]`` real signal.
      n_fft: frame and FFT length (the window length).
      hop_length: samples between frame starts.
      center: pad ``n_fft // 2`` on both sides so frame ``t`` is centred at ``t * hop``.
      pad_mode: ``"reflect"`` (librosa < 0.10 default, used by OGM-GE) or
        ``"constant"`` (librosa >= 0.10 default).

    Returns:
      ``[1 + n_fft // 2, n_frames]`` complex64.
    """
    x = np.asarray(x, np.float32)
    if center:
        x = np.pad(x, n_fft // 2, mode=pad_mode)
    if len(x) < n_fft:
        raise ValueError(f"signal of {len(x)} samples is shorter than n_fft={n_fft}")
    from scipy import signal

    window = signal.get_window("hann", n_fft, fftbins=True).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length]
    return np.fft.rfft(frames * window, axis=-1).T.astype(np.complex64)


def log_magnitude(spec: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """``log(|spec| + eps)`` as float32."""
    return np.log(np.abs(spec) + eps).astype(np.float32)


def ogm_audio_features(x: np.ndarray, rate: int, *, pad_mode: str = "reflect") -> np.ndarray:
    """The OGM-GE CREMA-D audio input: a ``[257, 188]`` log-magnitude STFT.

    Resamples to 22,050 Hz, tiles to 3 s (OGM-GE tiles three times and cuts; for
    clips of at least 1 s this is the same, shorter clips are tiled further so
    the shape is fixed), clips to ``[-1, 1]``, STFT with ``n_fft=512,
    hop_length=353``, then ``log(|S| + 1e-7)``.

    Args:
      x: ``[n]`` float waveform.
      rate: its sample rate.
      pad_mode: STFT edge padding, see :func:`stft`.

    Returns:
      ``[257, 188]`` float32.
    """
    y = tile_to_length(resample(x, rate, OGM_RATE), int(OGM_RATE * OGM_SECONDS))
    return log_magnitude(stft(np.clip(y, -1.0, 1.0), OGM_N_FFT, OGM_HOP, pad_mode=pad_mode))


def area_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` weights averaging ``n_in`` cells into ``n_out`` equal-width bins.

    Each output bin is the overlap-weighted mean of the input cells it covers, so
    the same matrix pools (``n_in > n_out``) or stretches (``n_in < n_out``).
    """
    edges = np.linspace(0.0, n_in, n_out + 1)
    cells = np.arange(n_in)
    lo = np.maximum(edges[:-1, None], cells[None])
    hi = np.minimum(edges[1:, None], cells[None] + 1)
    w = np.clip(hi - lo, 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def kaldi_mel_banks(num_bins: int, n_fft: int, rate: int, low_freq: float = 20.0,
                    high_freq: float | None = None) -> np.ndarray:
    """Kaldi's triangular mel filters, ``[num_bins, n_fft // 2 + 1]``.

    Triangles are linear in Kaldi's mel scale ``1127 ln(1 + f / 700)`` between
    ``low_freq`` and ``high_freq`` (default Nyquist); the Nyquist bin gets no weight.
    """
    mel = lambda f: 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)
    high_freq = rate / 2 if high_freq is None else high_freq
    lo, hi = mel(low_freq), mel(high_freq)
    delta = (hi - lo) / (num_bins + 1)
    left = lo + delta * np.arange(num_bins)[:, None]
    centre, right = left + delta, left + 2 * delta
    f_mel = mel(np.arange(n_fft // 2) * rate / n_fft)[None]
    w = np.maximum(0.0, np.minimum((f_mel - left) / (centre - left), (right - f_mel) / (right - centre)))
    return np.concatenate([w, np.zeros((num_bins, 1))], axis=1).astype(np.float32)


def kaldi_fbank(x: np.ndarray, rate: int, *, num_mel_bins: int = 128, frame_length_ms: float = 25.0,
                frame_shift_ms: float = 10.0, preemphasis: float = 0.97) -> np.ndarray:
    """Kaldi-style log mel filterbank (the AST / OGM-GE Kinetics-Sounds audio input).

    Matches the settings ``htk_compat=True, use_energy=False, window_type='hanning',
    dither=0``: frames without edge padding (``snip_edges``), per-frame DC removal,
    pre-emphasis, symmetric Hann window, zero-padding to a power of two, power
    spectrum, Kaldi mel banks, ``log(max(e, float32 eps))``.

    Args:
      x: ``[n]`` waveform.
      rate: sample rate.
      num_mel_bins: mel filters.
      frame_length_ms: window length.
      frame_shift_ms: hop.
      preemphasis: pre-emphasis coefficient.

    Returns:
      ``[n_frames, num_mel_bins]`` float32.
    """
    size = int(rate * frame_length_ms / 1000)
    shift = int(rate * frame_shift_ms / 1000)
    if len(x) < size:
        raise ValueError(f"signal of {len(x)} samples is shorter than one {size}-sample frame")
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float64), size)[::shift]
    frames = frames - frames.mean(axis=1, keepdims=True)
    shifted = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - preemphasis * shifted
    n_fft = 1 << (size - 1).bit_length()
    power = np.abs(np.fft.rfft(frames * np.hanning(size), n=n_fft, axis=1)) ** 2
    mel = power @ kaldi_mel_banks(num_mel_bins, n_fft, rate).T.astype(np.float64)
    return np.log(np.maximum(mel, np.finfo(np.float32).eps)).astype(np.float32)
