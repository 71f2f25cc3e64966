"""The audio contract of the call-channel transforms: 16 kHz mono float32, same length out as in.

One place checks it, so every transform fails the same clear way on a stereo array, int16 PCM,
an empty clip or NaNs instead of producing a silently wrong training window.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def require_mono(x: object, what: str = "audio") -> np.ndarray:
    """Return ``x`` if it is a non-empty, finite, 1-D float32 array; raise ValueError otherwise."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, not {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"{what} must be float32 in [-1, 1], not {x.dtype} (use .astype)")
    if x.ndim != 1:
        raise ValueError(f"{what} must be mono, shape [samples], not {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} has NaN or infinite samples")
    return x


def align(y: np.ndarray, n: int, delay: int = 0) -> np.ndarray:
    """``y`` advanced by ``delay`` samples and cut or zero-padded to ``n``, as float32.

    A codec's output lags its input by a fixed delay (look-ahead, filter banks); dropping that
    many leading samples lines the output up with the input, sample for sample. A negative delay
    (output early) pads the front instead.
    """
    y = np.asarray(y, dtype=np.float32)
    y = np.concatenate([np.zeros(-delay, dtype=np.float32), y]) if delay < 0 else y[delay:]
    if y.size >= n:
        return y[:n].copy()
    return np.pad(y, (0, n - y.size))


def peak_normalize(y: np.ndarray) -> np.ndarray:
    """Scale down only if the peak exceeds full scale (RawBoost's ``normWav(x, 0)``), float32."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    out = y / peak if peak > 1.0 else y
    return np.asarray(out, dtype=np.float32)
