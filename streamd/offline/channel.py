"""Simulate a narrowband phone channel: 16 kHz -> 8 kHz G.711 (mu-law or A-law) -> 16 kHz.

``streamd eval --telephony`` uses it to measure what a detector sees on a real call: the 4-8 kHz
band is gone (8 kHz sampling) and the samples carry companding noise (8-bit G.711).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

from streamd.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

Law = Literal["ulaw", "alaw"]


def g711_roundtrip(audio_16k: np.ndarray, law: Law = "ulaw") -> np.ndarray:
    """Pass 16 kHz mono float audio in [-1, 1] through 8 kHz G.711 and back; float32, same length.

    soxr's linear-phase resampler keeps the output aligned with the input, so per-sample
    comparisons (and window boundaries) still hold; the result is trimmed or zero-padded to the
    input length to absorb the odd-length rounding of 16k -> 8k -> 16k.
    """
    if law == "ulaw":
        encode, decode = ulaw_encode, ulaw_decode
    elif law == "alaw":
        encode, decode = alaw_encode, alaw_decode
    else:
        raise ValueError(f"law must be 'ulaw' or 'alaw', not {law!r}")
    x = np.asarray(audio_16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return x.copy()
    narrow = soxr.resample(x, 16000, 8000)
    # encode clips to int16 range: resampling overshoot past full scale saturates as a codec would
    coded = decode(encode(narrow)).astype(np.float32) / np.float32(32768.0)
    wide = np.asarray(soxr.resample(coded, 8000, 16000), dtype=np.float32)
    if wide.shape[0] >= n:
        return wide[:n].copy()
    return np.pad(wide, (0, n - wide.shape[0]))
