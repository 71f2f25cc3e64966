"""G.711 tables against Python 3.11's ``audioop`` (the reference while it still exists)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

from streamd.codecs import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop as _audioop

        audioop: ModuleType | None = _audioop
    except ImportError:  # Python 3.13+
        audioop = None

needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop was removed in Python 3.13")

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))

ENCODERS: dict[str, tuple[Callable[[np.ndarray], bytes], str]] = {
    "ulaw": (g711.ulaw_encode, "lin2ulaw"),
    "alaw": (g711.alaw_encode, "lin2alaw"),
}
DECODERS: dict[str, tuple[Callable[[bytes], np.ndarray], str]] = {
    "ulaw": (g711.ulaw_decode, "ulaw2lin"),
    "alaw": (g711.alaw_decode, "alaw2lin"),
}


def reference(name: str, data: bytes) -> bytes:
    assert audioop is not None
    return bytes(getattr(audioop, name)(data, 2))


@needs_audioop
@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_all_256_codes_matches_audioop(law: str) -> None:
    decode, ref = DECODERS[law]
    ours = decode(ALL_CODES)
    assert ours.dtype == np.int16 and ours.shape == (256,)
    np.testing.assert_array_equal(ours, np.frombuffer(reference(ref, ALL_CODES), dtype=np.int16))


@needs_audioop
@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encode_all_65536_values_matches_audioop(law: str) -> None:
    encode, ref = ENCODERS[law]
    ours = np.frombuffer(encode(ALL_PCM), dtype=np.uint8)
    theirs = np.frombuffer(reference(ref, ALL_PCM.tobytes()), dtype=np.uint8)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_roundtrip_error_is_within_half_a_segment_step(law: str) -> None:
    encode, _ = ENCODERS[law]
    decode = DECODERS[law][0]
    back = decode(encode(ALL_PCM)).astype(np.int32)
    error = np.abs(back - ALL_PCM.astype(np.int32))
    magnitude = np.abs(ALL_PCM.astype(np.int32))
    # G.711 is ~8 bits of log-PCM: error stays under ~6.5 % of the magnitude (plus a floor).
    assert np.all(error <= np.maximum(magnitude * 0.065, 16 if law == "ulaw" else 24) + 1)


def test_codes_decode_back_to_themselves() -> None:
    """decode then encode is the identity for every code, except mu-law's negative zero."""
    codes = np.frombuffer(ALL_CODES, dtype=np.uint8)
    ulaw = np.frombuffer(g711.ulaw_encode(g711.ulaw_decode(ALL_CODES)), dtype=np.uint8)
    assert np.flatnonzero(ulaw != codes).tolist() == [0x7F]  # 0x7F and 0xFF both decode to 0
    alaw = np.frombuffer(g711.alaw_encode(g711.alaw_decode(ALL_CODES)), dtype=np.uint8)
    np.testing.assert_array_equal(alaw, codes)
