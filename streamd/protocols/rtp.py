"""RTP fixed header parsing and building (RFC 3550 §5), sans-I/O.

Only the header is interpreted: payload bytes are handed to a codec untouched. The parser is
strict about lengths (CSRC list, extension, padding) because a lying length field is the usual
way junk on an RTP port would otherwise turn into an ``IndexError`` or a bogus payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamd.errors import ProtocolError

RTP_VERSION = 2
HEADER_SIZE = 12
#: RFC 5761 §4: with RTP/RTCP multiplexing, a second byte in 192..223 is RTCP (packet types
#: 192-223, i.e. SR=200 .. XR=207 and the feedback types); RTP must not use PT 64-95 then.
_RTCP_SECOND_BYTE = range(192, 224)

_FIXED = struct.Struct("!BBHII")


class RtpError(ProtocolError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One parsed RTP packet. ``payload`` excludes the CSRCs, the extension and the padding."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding: int = 0


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True for RTCP multiplexed on the RTP port (RFC 5761), so adapters can skip it cheaply."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and data[1] in _RTCP_SECOND_BYTE


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP datagram; raise :class:`RtpError` for anything malformed or for RTCP."""
    buf = bytes(data)
    if len(buf) < HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {len(buf)} bytes")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(buf)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6} is not 2")
    if b1 in _RTCP_SECOND_BYTE:
        raise RtpError("RTCP packet on the RTP port")
    has_padding = bool(b0 & 0x20)
    has_extension = bool(b0 & 0x10)
    csrc_count = b0 & 0x0F
    end = len(buf)

    padding = 0
    if has_padding:
        padding = buf[-1]
        if padding == 0:
            raise RtpError("RTP padding bit set with a pad count of 0")
        end -= padding
        if end < HEADER_SIZE:
            raise RtpError("RTP padding is longer than the packet body")

    offset = HEADER_SIZE + 4 * csrc_count
    if offset > end:
        raise RtpError("RTP CSRC list runs past the packet")
    csrcs = struct.unpack_from(f"!{csrc_count}I", buf, HEADER_SIZE) if csrc_count else ()

    extension_profile: int | None = None
    extension = b""
    if has_extension:
        if offset + 4 > end:
            raise RtpError("RTP header extension runs past the packet")
        extension_profile, words = struct.unpack_from("!HH", buf, offset)
        offset += 4
        if offset + 4 * words > end:
            raise RtpError("RTP header extension length runs past the packet")
        extension = buf[offset : offset + 4 * words]
        offset += 4 * words

    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=buf[offset:end],
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension_profile=extension_profile,
        extension=extension,
        padding=padding,
    )


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes = b"",
    *,
    marker: bool = False,
    csrcs: tuple[int, ...] | list[int] = (),
    extension_profile: int | None = None,
    extension: bytes = b"",
    padding: int = 0,
) -> bytes:
    """Serialize an RTP packet (for tests and tools). ``extension`` must be whole 32-bit words."""
    if not 0 <= payload_type <= 127:
        raise RtpError(f"payload type {payload_type} is not 0..127")
    if len(csrcs) > 15:
        raise RtpError("at most 15 CSRCs")
    if len(extension) % 4 or len(extension) // 4 > 0xFFFF:
        raise RtpError("extension must be whole 32-bit words, at most 65535 of them")
    if extension and extension_profile is None:
        raise RtpError("extension data needs an extension_profile")
    if not 0 <= padding <= 255:
        raise RtpError("padding is 0..255 bytes")
    has_ext = extension_profile is not None
    b0 = (RTP_VERSION << 6) | (0x20 if padding else 0) | (0x10 if has_ext else 0) | len(csrcs)
    b1 = (0x80 if marker else 0) | payload_type
    parts = [
        _FIXED.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF),
        struct.pack(f"!{len(csrcs)}I", *(c & 0xFFFFFFFF for c in csrcs)),
    ]
    if has_ext:
        parts.append(struct.pack("!HH", extension_profile, len(extension) // 4) + extension)
    parts.append(bytes(payload))
    if padding:
        parts.append(bytes(padding - 1) + bytes([padding]))
    return b"".join(parts)


class Unwrapper:
    """Extends a wrapping counter (16-bit sequence, 32-bit timestamp) to an unbounded integer.

    Each value is placed at the extension closest to the highest value seen so far, so both
    wrap-around and moderate reordering come out right. :meth:`extend` only looks; :meth:`unwrap`
    also moves the reference forward, which lets callers refuse to be steered by junk packets.
    """

    __slots__ = ("_half", "_highest", "_mask", "_modulus")

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._mask = self._modulus - 1
        self._half = self._modulus >> 1
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        """The highest extended value accepted so far (None before the first)."""
        return self._highest

    def extend(self, value: int) -> int:
        """The extended value for ``value``, without updating the reference."""
        value &= self._mask
        if self._highest is None:
            return value
        delta = ((value - self._highest + self._half) & self._mask) - self._half
        return self._highest + delta

    def unwrap(self, value: int) -> int:
        """Extend ``value`` and remember it if it is the highest so far."""
        extended = self.extend(value)
        if self._highest is None or extended > self._highest:
            self._highest = extended
        return extended

    def reset(self) -> None:
        """Forget the reference (new source)."""
        self._highest = None


class SequenceUnwrapper(Unwrapper):
    """16-bit RTP sequence numbers to extended sequence numbers."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(16)


class TimestampUnwrapper(Unwrapper):
    """32-bit RTP timestamps to extended timestamps."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(32)
