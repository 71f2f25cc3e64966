"""Audio codecs a call carries (G.711, L16, G.722, Opus): payload bytes to samples, nothing else.

``make_decoder`` is the one entry point the ingests use (as ``aiortc.codecs.get_decoder``); each
codec lives in its own module and depends only on :mod:`streamd.codecs.base`.
"""

from __future__ import annotations

from streamd.codecs.av import G722Decoder, OpusDecoder
from streamd.codecs.base import CodecError, Decoder
from streamd.codecs.g711 import G711Decoder
from streamd.codecs.l16 import L16Decoder

__all__ = ["SUPPORTED_ENCODINGS", "CodecError", "Decoder", "make_decoder"]


def make_decoder(encoding_name: str, clock_rate: int, channels: int = 1) -> Decoder:
    """A stateful decoder for an SDP ``rtpmap`` encoding (case-insensitive)."""
    name = encoding_name.strip().upper()
    if name in ("PCMU", "PCMA"):
        return G711Decoder(name, clock_rate, channels)
    if name == "L16":
        return L16Decoder(clock_rate, channels)
    if name == "G722":
        return G722Decoder(clock_rate, channels)
    if name == "OPUS":
        return OpusDecoder(clock_rate, channels)
    raise CodecError(f"unsupported encoding {encoding_name!r}")


SUPPORTED_ENCODINGS = ("PCMU", "PCMA", "L16", "G722", "opus")
