"""MultiBench affect pickles in the exact on-disk format, for the reader and protocol tests.

Sequences are left zero-padded to ``T`` steps, one audio value is ``-inf`` (COVAREP's), MOSI/MOSEI
labels are float sentiments shaped ``[N, 1, 1]`` (MulT), sarcasm/humor labels 0/1.
"""
import pickle

import numpy as np

T = 50
DIMS = {"vision": 5, "audio": 4, "text": 300}
SPLIT_KEYS = ("train", "valid", "test")


def make_split(n, rng, label_shape=(1, 1), sentiment=True, steps=None, empty_row=None, dims=None):
    """One split dict ``{vision, audio, text, labels, id}`` and the content length of every row.

    Args:
      n: examples.
      rng: a numpy ``Generator``.
      label_shape: per-example label shape (``(1, 1)``: MulT's ``[N, 1, 1]``).
      sentiment: float labels in [-3, 3] (MOSI/MOSEI); else 0/1 (sarcasm/humor).
      steps: modality -> sequence length (default ``T`` for all: aligned).
      empty_row: a row whose text is all zeros (the reader drops it).
      dims: modality -> feature width (default :data:`DIMS`).
    """
    dims = dims or DIMS
    steps = steps or {m: T for m in dims}
    lengths = rng.integers(1, min(steps.values()) + 1, n)
    d = {}
    for m, dim in dims.items():
        x = np.zeros((n, steps[m], dim), np.float32)
        for i, length in enumerate(lengths):
            x[i, steps[m] - length:] = rng.uniform(0.5, 1.5, (length, dim))
        d[m] = x
    d["audio"][0, -1, 0] = -np.inf
    if empty_row is not None:
        d["text"][empty_row] = 0.0
    labels = rng.uniform(-3, 3, n) if sentiment else rng.integers(0, 2, n).astype(np.float64)
    d["labels"] = labels.reshape((n,) + label_shape)
    d["id"] = np.array([[f"v{i}".encode(), b"0", b"1"] for i in range(n)])
    return d, lengths


def write(path, content):
    """Pickles ``content`` to ``path``."""
    with open(path, "wb") as f:
        pickle.dump(content, f)


def write_file(path, n, seed=0, sentiment=True, dims=None):
    """A whole ``{'train', 'valid', 'test'}`` pickle of ``n`` examples per split at ``path``."""
    rng = np.random.default_rng(seed)
    write(path, {k: make_split(n, rng, sentiment=sentiment, dims=dims)[0] for k in SPLIT_KEYS})
