"""G.711 mu-law and A-law with numpy lookup tables (``audioop`` is gone in Python 3.13).

Decoding is a 256-entry table. Encoding is a 65,536-entry table indexed by the int16 sample,
built once from the ITU-T G.711 segment rules, so both directions are one numpy ``take``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_SEG_END = np.array([0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF], dtype=np.int32)
_ULAW_BIAS = 0x84


@cache
def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


@cache
def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    t = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(values: np.ndarray) -> np.ndarray:
    return np.searchsorted(_SEG_END, values, side="left").astype(np.int32)


@cache
def _ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    negative = pcm < 0
    mag = np.where(negative, _ULAW_BIAS - pcm, pcm + _ULAW_BIAS)
    mask = np.where(negative, 0x7F, 0xFF)
    seg = _segment(mag)
    uval = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 3)) & 0x0F)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return out.astype(np.uint8)


@cache
def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    negative = pcm < 0
    mag = np.where(negative, -pcm - 8, pcm)
    mag = np.maximum(mag, 0)
    mask = np.where(negative, 0x55, 0xD5)
    seg = _segment(mag)
    segc = np.minimum(seg, 7)
    low = np.where(segc < 2, (mag >> 4) & 0x0F, (mag >> (segc + 3)) & 0x0F)
    aval = (segc << 4) | low
    out = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
    return out.astype(np.uint8)


def ulaw_decode(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """mu-law bytes to int16 samples."""
    return _ulaw_decode_table()[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """A-law bytes to int16 samples."""
    return _alaw_decode_table()[np.frombuffer(payload, dtype=np.uint8)]


def _as_int16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
    return np.clip(samples, -32768, 32767).astype(np.int16)


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 (or float in [-1, 1]) samples to mu-law bytes."""
    idx = _as_int16(np.asarray(samples)).astype(np.int32) + 32768
    return bytes(_ulaw_encode_table()[idx])


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 (or float in [-1, 1]) samples to A-law bytes."""
    idx = _as_int16(np.asarray(samples)).astype(np.int32) + 32768
    return bytes(_alaw_encode_table()[idx])
