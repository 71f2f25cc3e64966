"""One vocabulary for the contact-center feeds (Twilio, AudioHook, audio fork, AudioSocket).

Each feed is a sans-I/O session: the adapter hands it what came off the wire and gets back a
list of events, in order. The same few event types serve all four feeds, so the adapter that
wires a session to a socket is one loop with one ``match``:

- ``StreamOpened`` / ``Audio`` / ``Gap`` / ``StreamClosed``: one call leg's life, mono int16 PCM
  at the leg's native rate. ``key`` names the leg within one connection.
- ``Reply``: a JSON message to send back (only AudioHook talks back).
- ``Notice``: something worth a debug line or a label (DTMF, marks, pause, ping...).
- ``ProtocolViolation``: something worth a warning line; ``fatal`` ones end the session.
- ``Disconnect``: the session is over; close the transport after sending the replies, waiting
  up to ``grace_s`` for the peer to close first where the protocol expects it to.

Sessions never raise: a ``ProtocolError`` from a parser becomes a ``ProtocolViolation``. The
parsers themselves raise only ``ProtocolError`` (``FeedError`` carries what to do about it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from streamd.errors import ProtocolError

# WebSocket close codes (RFC 6455) the adapters pass through.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

MAX_LABELS = 32
MAX_LABEL_CHARS = 256


class FeedError(ProtocolError):
    """A protocol error that knows how bad it is.

    ``fatal`` errors end the session; others drop one frame. ``code`` is HTTP-like (400 bad
    request, 409 wrong state, 413 too large, 415 unsupported media, 401 unauthorized): AudioHook
    puts it in its ``disconnect`` info, the others only log it. ``close_code`` is the WebSocket
    close code for the transport.
    """

    def __init__(
        self,
        message: str,
        *,
        fatal: bool = True,
        code: int = 400,
        close_code: int = CLOSE_PROTOCOL_ERROR,
    ) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.code = code
        self.close_code = close_code


@dataclass(frozen=True)
class StreamOpened:
    key: str
    leg: str
    call_id: str
    labels: dict[str, str]
    sample_rate: int
    source: str


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono int16 samples at the stream's rate, in stream order (a fresh, writable array)."""

    key: str
    samples: np.ndarray


@dataclass(frozen=True)
class Gap:
    """``n_samples`` of stream time with no audio: silence of the right length, never a shift.

    ``reason`` is ``loss`` (missing packets; ``frames`` says how many), ``pause`` (the platform
    paused the feed) or ``discarded`` (the platform dropped audio it could not send). Long gaps
    should advance the stream clock rather than allocate zeros.
    """

    key: str
    n_samples: int
    reason: str
    frames: int = 0


@dataclass(frozen=True)
class StreamClosed:
    key: str
    reason: str


@dataclass(frozen=True)
class Notice:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolViolation:
    message: str
    fatal: bool
    code: int = 400


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any]


@dataclass(frozen=True)
class Disconnect:
    code: int
    reason: str
    grace_s: float = 0.0


FeedEvent = (
    StreamOpened | Audio | Gap | StreamClosed | Notice | ProtocolViolation | Reply | Disconnect
)
T = TypeVar("T")


class FeedSession:
    """What the four sessions share: stream bookkeeping, the event queue, error handling.

    Subclasses do their parsing in private methods and run them through ``_run``, which turns
    any ``ProtocolError`` into events. After a fatal error, or when the feed ends, the session
    is ``finished`` and ignores further input.
    """

    source = "feed"

    def __init__(self, *, max_violations: int = 50) -> None:
        self.streams: dict[str, StreamOpened] = {}
        self.finished = False
        self.violations = 0
        self.max_violations = max_violations
        self._events: list[FeedEvent] = []

    def connection_lost(self) -> list[FeedEvent]:
        """The transport dropped: flush what is held and close every open stream."""
        if not self.finished:
            self._flush()
            self._close_streams("disconnect")
            self.finished = True
        return self._take()

    # -- for subclasses ---------------------------------------------------------------------

    def _run(self, handler: Callable[[T], None], arg: T) -> list[FeedEvent]:
        if self.finished:
            return []
        try:
            handler(arg)
        except ProtocolError as exc:
            self._error(exc)
        return self._take()

    def _error(self, exc: ProtocolError) -> None:
        fatal = getattr(exc, "fatal", True)
        code = getattr(exc, "code", 400)
        if not fatal:
            self.violations += 1
            fatal = self.violations > self.max_violations
        self._events.append(ProtocolViolation(str(exc), fatal, code))
        if fatal:
            self._fail(str(exc), code, getattr(exc, "close_code", CLOSE_PROTOCOL_ERROR))

    def _fail(self, message: str, code: int, close_code: int) -> None:
        """End the session after a fatal error. AudioHook first tells the client why."""
        self._close_streams("error")
        self._finish(close_code, message)

    def _finish(self, code: int, reason: str, grace_s: float = 0.0) -> None:
        self.finished = True
        self._events.append(Disconnect(code, reason, grace_s))

    def _flush(self) -> None:
        """Emit audio still held back (reorder buffers); the default holds nothing."""

    def _open(self, key: str, leg: str, call_id: str, labels: dict[str, str], rate: int) -> None:
        opened = StreamOpened(key, leg, call_id, labels, rate, self.source)
        self.streams[key] = opened
        self._events.append(opened)

    def _emit(self, event: FeedEvent) -> None:
        self._events.append(event)

    def _close_streams(self, reason: str) -> None:
        for key in list(self.streams):
            self._events.append(StreamClosed(key, reason))
        self.streams.clear()

    def _take(self) -> list[FeedEvent]:
        events, self._events = self._events, []
        return events


# -- helpers the parsers share ------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_size(data: Sized, limit: int, what: str) -> None:
    """Refuse an oversize frame. Always fatal (413): the peer is misconfigured or hostile."""
    if len(data) > limit:
        message = f"{what} of {len(data)} bytes exceeds the limit of {limit}"
        raise FeedError(message, code=413, close_code=CLOSE_TOO_BIG)


# One decoder for every message: json.loads with parse_constant builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_json_object(data: str | bytes, max_bytes: int, *, fatal: bool = True) -> dict[str, Any]:
    """Parse one JSON object from a text frame, or raise ``FeedError`` (too big is always fatal)."""
    check_size(data, max_bytes, "text message")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError are ValueErrors
        raise FeedError(f"not valid JSON: {exc}", fatal=fatal) from None
    if not isinstance(obj, dict):
        raise FeedError(f"expected a JSON object, got {type(obj).__name__}", fatal=fatal)
    return obj


def as_int(value: Any, name: str, *, low: int = 0, high: int = 2**53, fatal: bool = True) -> int:
    """An integer field that may arrive as a JSON number or as a decimal string (Twilio)."""
    if isinstance(value, bool):
        raise FeedError(f"{name} must be an integer, got a boolean", fatal=fatal)
    digits = isinstance(value, str) and 0 < len(value) <= 19 and value.isascii() and value.isdigit()
    if digits or (isinstance(value, float) and math.isfinite(value) and value.is_integer()):
        value = int(value)
    if not isinstance(value, int):
        raise FeedError(f"{name} must be an integer, got {value!r:.40}", fatal=fatal)
    if not low <= value <= high:
        raise FeedError(f"{name}={value} is out of range [{low}, {high}]", fatal=fatal)
    return value


def as_str(value: Any, name: str, *, fatal: bool = True, max_chars: int = 1024) -> str:
    if not isinstance(value, str):
        raise FeedError(f"{name} must be a string, got {type(value).__name__}", fatal=fatal)
    if len(value) > max_chars:
        raise FeedError(f"{name} is longer than {max_chars} characters", fatal=fatal)
    return value


def as_choice(value: Any, choices: Collection[str], name: str, *, fatal: bool = True) -> str:
    """A string field that must be one of ``choices`` (safe for any JSON value, even a list)."""
    if not isinstance(value, str) or value not in choices:
        raise FeedError(f"{name} must be one of {sorted(choices)}, got {value!r:.40}", fatal=fatal)
    return value


def as_dict(value: Any, name: str, *, fatal: bool = True) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FeedError(f"{name} must be an object, got {type(value).__name__}", fatal=fatal)
    return value


def clean_labels(raw: Mapping[Any, Any]) -> dict[str, str]:
    """Platform metadata to ``labels``: scalar values only, as bounded strings.

    Labels end up in every event and in the durable store, so nested values and
    unbounded strings from a peer are left out rather than copied.
    """
    out: dict[str, str] = {}
    for key, value in raw.items():
        if len(out) >= MAX_LABELS:
            break
        if not isinstance(key, str) or not key or value is None or isinstance(value, (dict, list)):
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out[key[:MAX_LABEL_CHARS]] = text[:MAX_LABEL_CHARS]
    return out


def pcm16_frames(data: bytes | bytearray | memoryview, channels: int, *, what: str) -> np.ndarray:
    """Little-endian 16-bit PCM bytes to int16 ``[n, channels]``; partial samples are an error."""
    size = 2 * channels
    if len(data) % size:
        raise FeedError(f"{what}: {len(data)} bytes is not a whole number of {size}-byte samples")
    return np.frombuffer(data, dtype="<i2").astype(np.int16).reshape(-1, channels)


def split_channels(frames: np.ndarray) -> list[np.ndarray]:
    """``[n, channels]`` to one contiguous mono array per channel."""
    if frames.shape[1] == 1:
        return [frames[:, 0]]
    return [np.ascontiguousarray(frames[:, i]) for i in range(frames.shape[1])]
