"""Asterisk AudioSocket over TCP, sans-I/O: a stream framer and a session.

Every message is a 3-byte header, a kind byte and a big-endian 16-bit payload length, then
the payload. Asterisk's ``AudioSocket(uuid,host:port)`` dialplan app connects, sends the call
UUID (16 bytes), then the channel's audio as signed linear 16-bit little-endian mono frames
(kind 0x10 is 8 kHz; 0x11-0x18 carry 12/16/24/32/44.1/48/96/192 kHz), DTMF digits (0x03, one
ASCII byte), and hangup (0x00, empty) or error (0xff, an optional bit-packed code byte) at the
end; closing the socket also means hangup. The one stream is the channel's audio, leg
``caller`` unless configured otherwise.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

from streamd.protocols.feeds.base import (
    CLOSE_NORMAL,
    Audio,
    FeedError,
    FeedEvent,
    FeedSession,
    Notice,
    pcm16_frames,
)

HEADER = struct.Struct(">BH")
MAX_PAYLOAD = 0xFFFF  # what the 16-bit length allows
DEFAULT_MAX_PAYLOAD = 16 * 1024  # 40 ms at 192 kHz; Asterisk sends 20 ms (320 bytes at 8 kHz)


class Kind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


SLIN_RATES = {
    Kind.SLIN: 8000,
    Kind.SLIN12: 12000,
    Kind.SLIN16: 16000,
    Kind.SLIN24: 24000,
    Kind.SLIN32: 32000,
    Kind.SLIN44: 44100,
    Kind.SLIN48: 48000,
    Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
}

# Asterisk's error payload is one byte of flags.
ERROR_FLAGS = {
    0x01: "hangup of calling party",
    0x02: "frame forwarding error",
    0x04: "memory allocation error",
}


def describe_error(payload: bytes) -> str:
    if not payload:
        return "error (no code)"
    code = payload[0]
    names = [name for bit, name in ERROR_FLAGS.items() if code & bit]
    return f"error 0x{code:02x}" + (f" ({', '.join(names)})" if names else "")


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes


def build_frame(kind: int, payload: bytes = b"") -> bytes:
    """One wire message, for tests and tools (and for sending a hangup back)."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind must be a byte, got {kind}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a 16-bit length")
    return HEADER.pack(kind, len(payload)) + bytes(payload)


class Framer:
    """Bytes from the socket in, whole frames out; a frame may span any number of reads.

    A header announcing more than ``max_payload`` bytes is refused at once, before its
    payload is buffered.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = min(max_payload, MAX_PAYLOAD)
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        offset = 0
        buf = self._buffer
        while len(buf) - offset >= HEADER.size:
            kind, length = HEADER.unpack_from(buf, offset)
            if length > self.max_payload:
                raise FeedError(
                    f"frame of kind 0x{kind:02x} announces {length} bytes, over {self.max_payload}",
                    code=413,
                )
            end = offset + HEADER.size + length
            if end > len(buf):
                break
            frames.append(Frame(kind, bytes(buf[offset + HEADER.size : end])))
            offset = end
        del buf[:offset]
        return frames


class AudioSocketSession(FeedSession):
    """AudioSocket bytes in, stream events out. Never raises.

    The stream opens on the first audio frame, once the UUID is known and the frame kind has
    given the rate. A UUID that changes, audio before the UUID, a rate change, a partial
    sample or an unknown kind ends the session (Asterisk itself refuses unknown kinds).
    """

    source = "audiosocket"

    def __init__(self, *, leg: str = "caller", max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        super().__init__()
        self.leg = leg
        self.framer = Framer(max_payload)
        self.uuid: str | None = None
        self.sample_rate: int | None = None
        self.samples = 0
        self.frames = 0  # complete frames parsed: the adapter's idle timer watches this

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[FeedEvent]:
        return self._run(self._on_data, data)

    def _on_data(self, data: bytes | bytearray | memoryview) -> None:
        for frame in self.framer.feed(data):
            self.frames += 1
            self._on_frame(frame)
            if self.finished:
                return

    def _on_frame(self, frame: Frame) -> None:
        kind, payload = frame.kind, frame.payload
        if kind in SLIN_RATES:
            self._on_audio(SLIN_RATES[Kind(kind)], payload)
        elif kind == Kind.UUID:
            self._on_uuid(payload)
        elif kind == Kind.DTMF:
            if len(payload) != 1:
                raise FeedError(f"DTMF payload of {len(payload)} bytes", fatal=False)
            self._emit(Notice("dtmf", {"digit": chr(payload[0]) if payload[0] < 128 else "?"}))
        elif kind == Kind.HANGUP:
            self._end("hangup")
        elif kind == Kind.ERROR:
            message = describe_error(payload)
            self._emit(Notice("error", {"message": message}))
            self._end(message)
        else:
            raise FeedError(f"unknown frame kind 0x{kind:02x}")

    def _on_uuid(self, payload: bytes) -> None:
        if len(payload) != 16:
            raise FeedError(f"UUID payload of {len(payload)} bytes, not 16")
        value = str(uuid.UUID(bytes=payload))
        if self.uuid is not None and value != self.uuid:
            raise FeedError(f"UUID changed from {self.uuid} to {value}", code=409)
        self.uuid = value

    def _on_audio(self, rate: int, payload: bytes) -> None:
        if self.uuid is None:
            raise FeedError("audio before the UUID frame", code=409)
        if self.sample_rate is None:
            self.sample_rate = rate
            self._open("audio", self.leg, self.uuid, {"uuid": self.uuid}, rate)
        elif rate != self.sample_rate:
            raise FeedError(f"audio rate changed from {self.sample_rate} to {rate} Hz", code=415)
        samples = pcm16_frames(payload, 1, what="slin frame")[:, 0]
        self.samples += len(samples)
        if len(samples):
            self._emit(Audio("audio", samples))

    def _end(self, reason: str) -> None:
        self._close_streams(reason)
        self._finish(CLOSE_NORMAL, reason)
