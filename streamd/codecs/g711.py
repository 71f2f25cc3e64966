"""G.711 mu-law and A-law (PCMU, PCMA): the one implementation, tables and RTP decoder.

``audioop`` is gone in Python 3.13, so the tables are built here (tests compare every code and
every int16 value with ``audioop`` where it still exists). Decoding is a 256-entry table.
Encoding is a 65,536-entry table indexed by the int16 sample, built once from the ITU-T G.711
segment rules, so both directions are one numpy ``take``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from streamd.codecs.base import Decoder

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


# Segment ends on the codecs' own scales: 14-bit magnitude (+33 bias) for mu-law, 13-bit for A-law,
# after the arithmetic shift of the 16-bit sample (the order matters for negative samples).
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_PCM = np.arange(-32768, 32768, dtype=np.int32)


@cache
def _ulaw_encode_table() -> np.ndarray:
    v = _PCM >> 2
    negative = v < 0
    mag = np.minimum(np.where(negative, -v, v), 8159) + 33
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    s = np.minimum(seg, 7)
    uval = (s << 4) | ((mag >> (s + 1)) & 0x0F)
    mask = np.where(negative, 0x7F, 0xFF)
    return np.where(seg >= 8, 0x7F ^ mask, uval ^ mask).astype(np.uint8)


@cache
def _alaw_encode_table() -> np.ndarray:
    v = _PCM >> 3
    negative = v < 0
    mag = np.where(negative, -v - 1, v)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    s = np.minimum(seg, 7)
    aval = (s << 4) | np.where(s < 2, (mag >> 1) & 0x0F, (mag >> s) & 0x0F)
    mask = np.where(negative, 0x55, 0xD5)
    return np.where(seg >= 8, 0x7F ^ mask, aval ^ mask).astype(np.uint8)


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
    clipped: np.ndarray = np.clip(samples, -32768, 32767)
    return clipped.astype(np.int16)


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 (or float in [-1, 1]) samples to mu-law bytes."""
    idx = _as_int16(np.asarray(samples)).astype(np.int32) + 32768
    return bytes(_ulaw_encode_table()[idx])


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 (or float in [-1, 1]) samples to A-law bytes."""
    idx = _as_int16(np.asarray(samples)).astype(np.int32) + 32768
    return bytes(_alaw_encode_table()[idx])


class G711Decoder(Decoder):
    """PCMU or PCMA RTP payloads: one byte per sample (per channel), no inter-packet state."""

    def __init__(self, encoding: str, clock_rate: int, channels: int) -> None:
        self.encoding = encoding
        super().__init__(clock_rate, channels, clock_rate)
        self._table_decode = ulaw_decode if encoding == "PCMU" else alaw_decode

    def decode(self, payload: bytes) -> np.ndarray:
        self._check_frame_bytes(payload, self.channels)
        return self._shape(self._table_decode(payload))

    def duration(self, payload: bytes) -> int | None:
        return len(payload) // self.channels
