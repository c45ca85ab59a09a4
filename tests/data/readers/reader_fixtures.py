"""Writers of tiny on-disk fixtures in the exact layouts the readers expect."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile


def write_wav(path: Path, rate: int = 16000, seconds: float = 1.2, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """Writes an int16 mono sine and returns the float samples scipy will read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    data = (amp * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    wavfile.write(path, rate, data)
    return data.astype(np.float32) / 32768.0


def write_jpg(path: Path, value: int, size: tuple[int, int] = (24, 32), mode: str = "RGB") -> None:
    """Writes a constant-colour jpg (``value`` in every channel), ``size`` = (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size + ((3,) if mode == "RGB" else ())
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path, quality=95)


def truncate(path: Path, keep: int) -> None:
    """Cuts a file to its first ``keep`` bytes."""
    path.write_bytes(path.read_bytes()[:keep])


CREMA_EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def crema_names(actors=range(1001, 1013), emotions=CREMA_EMOTIONS, sentences=("DFA",)) -> list[str]:
    """Clip names ``<actor>_<sentence>_<emotion>_XX``."""
    return [f"{a}_{s}_{e}_XX" for a in actors for s in sentences for e in emotions]


def write_crema_d(root: Path, names, frames_per_clip: int = 3, rate: int = 16000) -> None:
    """Writes ``AudioWAV/<name>.wav`` and ``Image-01-FPS/<name>/0000k.jpg`` for every name.

    Each clip's audio frequency and frame colours encode its position, so tests can
    tell which clip's media ended up where.
    """
    for i, name in enumerate(names):
        write_wav(root / "AudioWAV" / f"{name}.wav", rate=rate, seconds=1.1, freq=200.0 + 37.0 * i)
        for k in range(frames_per_clip):
            write_jpg(root / "Image-01-FPS" / name / f"{k + 1:05d}.jpg", value=(10 * k + 3 * i) % 250)


def write_crema_csv(path: Path, names, bom: bool = True, crlf: bool = True) -> None:
    """Writes an OGM-GE split csv (``name,EMO`` lines) with the BOM/CRLF quirks."""
    end = "\r\n" if crlf else "\n"
    text = end.join(f"{n},{n.split('_')[2]}" for n in names) + end
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
