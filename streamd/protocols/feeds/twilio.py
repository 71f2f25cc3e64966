"""Twilio Media Streams, sans-I/O: message parsing, reordering, the request signature.

Twilio opens a websocket and sends JSON text frames: ``connected``, then ``start`` (stream and
call ids, tracks, custom parameters, media format), then ``media`` frames (base64 8 kHz mu-law,
usually 20 ms = 160 bytes, with a per-track ``chunk`` counter from 1 and a ``timestamp`` in ms
from the start of the stream), ``mark``, ``dtmf``, and finally ``stop``. Each track becomes one
stream: ``inbound`` is the caller, ``outbound`` the agent or bot.

Twilio itself delivers in order, but carriers that speak the same format do not promise to, so
every track goes through a small reorder buffer keyed by ``chunk``; a jump in ``timestamp``
becomes a ``Gap`` of the right length. Messages that cannot be used are dropped with a
``ProtocolViolation`` (one bad frame should not end a call); too many, or an oversize frame,
end the session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from streamd.codecs.g711 import alaw_decode, ulaw_decode
from streamd.protocols.feeds.base import (
    CLOSE_NORMAL,
    Audio,
    FeedError,
    FeedEvent,
    FeedSession,
    Gap,
    Notice,
    ProtocolViolation,
    as_choice,
    as_dict,
    as_int,
    as_str,
    clean_labels,
    load_json_object,
)

TRACK_LEGS = {"inbound": "caller", "outbound": "agent"}
DECODERS = {"audio/x-mulaw": ulaw_decode, "audio/x-alaw": alaw_decode}
MAX_MESSAGE_BYTES = 64 * 1024


class UnknownEvent(FeedError):
    """An ``event`` this parser does not know: dropped, never fatal (Twilio may add events)."""

    def __init__(self, event: str) -> None:
        super().__init__(f"unknown Twilio event {event[:40]!r} ignored", fatal=False)


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True)
class Media:
    track: str
    chunk: int
    timestamp: int
    payload: bytes
    stream_sid: str = ""


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Dtmf:
    digit: str
    track: str = ""


@dataclass(frozen=True)
class Stop:
    account_sid: str = ""
    call_sid: str = ""


TwilioMessage = Connected | Start | Media | Mark | Dtmf | Stop


def parse_message(data: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> TwilioMessage:
    """One text frame to a typed message. Raises ``FeedError``: fatal only when oversize."""
    msg = load_json_object(data, max_bytes, fatal=False)
    event = msg.get("event")
    if not isinstance(event, str):
        raise FeedError("message has no 'event'", fatal=False)
    sid = msg["streamSid"] if isinstance(msg.get("streamSid"), str) else ""
    if event == "media":
        return _parse_media(_section(msg, "media"), sid)
    if event == "start":
        return _parse_start(_section(msg, "start"), sid)
    if event == "connected":
        return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
    if event == "mark":
        return Mark(_text(_section(msg, "mark"), "name"))
    if event == "dtmf":
        dtmf = _section(msg, "dtmf")
        return Dtmf(_text(dtmf, "digit"), str(dtmf.get("track", ""))[:40])
    if event == "stop":
        stop = msg["stop"] if isinstance(msg.get("stop"), dict) else {}
        return Stop(str(stop.get("accountSid", ""))[:64], str(stop.get("callSid", ""))[:64])
    raise UnknownEvent(event)


def _section(msg: dict[str, Any], name: str) -> dict[str, Any]:
    return as_dict(msg.get(name), f"{msg['event']}.{name}", fatal=False)


def _text(section: dict[str, Any], name: str) -> str:
    return as_str(section.get(name), name, fatal=False, max_chars=256)


def _parse_start(start: dict[str, Any], sid: str) -> Start:
    tracks = start.get("tracks", ["inbound"])
    tracks = [tracks] if isinstance(tracks, str) else tracks
    if not isinstance(tracks, list):
        raise FeedError("start.tracks must be a list", fatal=False)
    tracks = [as_choice(t, TRACK_LEGS, "start.tracks[]", fatal=False) for t in tracks]
    fmt = as_dict(start.get("mediaFormat", {}), "start.mediaFormat", fatal=False)
    encoding = as_choice(fmt.get("encoding", "audio/x-mulaw"), DECODERS, "encoding", fatal=False)
    params = start.get("customParameters") or {}
    rate = as_int(fmt.get("sampleRate", 8000), "sampleRate", low=8000, high=48000, fatal=False)
    return Start(
        stream_sid=_text(start, "streamSid") if "streamSid" in start else sid,
        call_sid=_text(start, "callSid"),
        account_sid=str(start.get("accountSid", ""))[:64],
        tracks=tuple(dict.fromkeys(tracks)),
        custom_parameters=clean_labels(as_dict(params, "start.customParameters", fatal=False)),
        encoding=encoding,
        sample_rate=rate,
        channels=as_int(fmt.get("channels", 1), "channels", low=1, high=1, fatal=False),
    )


def _parse_media(media: dict[str, Any], sid: str) -> Media:
    track = as_choice(media.get("track", "inbound"), TRACK_LEGS, "media.track", fatal=False)
    payload = as_str(media.get("payload"), "media.payload", fatal=False, max_chars=1 << 16)
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise FeedError("media.payload is not valid base64", fatal=False) from None
    return Media(
        track=track,
        chunk=as_int(media.get("chunk"), "media.chunk", low=0, fatal=False),
        timestamp=as_int(media.get("timestamp"), "media.timestamp", fatal=False),
        payload=audio,
        stream_sid=sid,
    )


# -- reordering -----------------------------------------------------------------------------


@dataclass
class ReorderBuffer:
    """Puts one track's frames back in ``chunk`` order and turns timestamp gaps into ``Gap``.

    A frame waits until the chunk before it arrives or ``window`` later frames are held, so a
    lost frame costs ``window`` frames of latency once and reordering within the window costs
    nothing. Duplicates and frames that arrive after their slot was given up are dropped.
    Stream time starts at the first frame; after that, a frame whose timestamp is more than
    ``tolerance`` samples past the audio so far is preceded by a ``Gap`` (at most
    ``max_gap`` samples, so a bogus timestamp cannot stall the stream for hours).
    """

    key: str
    sample_rate: int = 8000
    window: int = 5
    max_gap: int = 60 * 8000
    dropped: int = field(default=0, init=False)
    lost: int = field(default=0, init=False)
    _pending: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict, init=False)
    _next: int | None = field(default=None, init=False)
    _clock: int | None = field(default=None, init=False)

    @property
    def tolerance(self) -> int:
        return max(1, self.sample_rate // 100)

    def push(self, chunk: int, timestamp_ms: int, samples: np.ndarray) -> list[FeedEvent]:
        if (self._next is not None and chunk < self._next) or chunk in self._pending:
            self.dropped += 1
            return []
        self._pending[chunk] = (timestamp_ms, samples)
        if self._next is None:
            if chunk > 1 and len(self._pending) <= self.window:
                return []  # the first chunk may still be on its way
            self._next = min(self._pending)
        return self._drain(force=False)

    def flush(self) -> list[FeedEvent]:
        if self._next is None and self._pending:
            self._next = min(self._pending)
        return self._drain(force=True)

    def _drain(self, force: bool) -> list[FeedEvent]:
        out: list[FeedEvent] = []
        while self._pending and self._next is not None:
            item = self._pending.pop(self._next, None)
            if item is None:
                if not force and len(self._pending) <= self.window:
                    break
                following = min(self._pending)
                self.lost += following - self._next
                self._next = following
                continue
            out.extend(self._place(*item))
            self._next += 1
        return out

    def _place(self, timestamp_ms: int, samples: np.ndarray) -> list[FeedEvent]:
        out: list[FeedEvent] = []
        pos = timestamp_ms * self.sample_rate // 1000
        if self._clock is None:
            self._clock = pos
        gap = pos - self._clock
        if gap >= self.tolerance:
            frames = max(1, round(gap / max(1, len(samples))))
            out.append(Gap(self.key, min(gap, self.max_gap), "loss", frames))
            self._clock = pos
        elif gap <= -self.tolerance:
            self._clock = pos  # timestamps fell behind the samples: resync, keep the audio
        if len(samples):
            out.append(Audio(self.key, samples))
        self._clock += len(samples)
        return out


# -- the session ----------------------------------------------------------------------------


class TwilioSession(FeedSession):
    """Twilio frames in, stream events out. One stream per track; never raises.

    ``media`` that arrives before ``start`` is held (up to ``max_early`` frames) and replayed
    once ``start`` says how to decode it.
    """

    source = "twilio"

    def __init__(
        self,
        *,
        reorder_window: int = 5,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_gap_s: float = 60.0,
        max_early: int = 50,
        max_violations: int = 50,
    ) -> None:
        super().__init__(max_violations=max_violations)
        self.reorder_window = reorder_window
        self.max_message_bytes = max_message_bytes
        self.max_gap_s = max_gap_s
        self.max_early = max_early
        self.start: Start | None = None
        self.buffers: dict[str, ReorderBuffer] = {}
        self._early: list[Media] = []

    def receive_text(self, data: str | bytes) -> list[FeedEvent]:
        return self._run(self._on_text, data)

    def receive_bytes(self, data: bytes) -> list[FeedEvent]:
        return self._run(self._on_bytes, data)

    def _on_bytes(self, data: bytes) -> None:
        raise FeedError(
            f"binary frame of {len(data)} bytes ignored: Twilio sends text", fatal=False
        )

    def _on_text(self, data: str | bytes) -> None:
        msg = parse_message(data, self.max_message_bytes)
        if isinstance(msg, Media):
            self._on_media(msg)
        elif isinstance(msg, Start):
            self._on_start(msg)
        elif isinstance(msg, Stop):
            self._flush()
            self._close_streams("stop")
            self._finish(CLOSE_NORMAL, "stream stopped", grace_s=2.0)
        elif isinstance(msg, Dtmf):
            self._emit(Notice("dtmf", {"digit": msg.digit, "track": msg.track}))
        elif isinstance(msg, Mark):
            self._emit(Notice("mark", {"name": msg.name}))
        else:
            self._emit(Notice("connected", {"protocol": msg.protocol, "version": msg.version}))

    def _on_start(self, start: Start) -> None:
        if self.start is not None:
            raise FeedError("second 'start' on one stream ignored", fatal=False, code=409)
        self.start = start
        for track in start.tracks:
            self._track(track)
        early, self._early = self._early, []
        for media in early:
            self._on_media(media)

    def _on_media(self, media: Media) -> None:
        if self.start is None:
            if len(self._early) >= self.max_early:
                raise FeedError(f"{self.max_early} media frames before 'start'", code=409)
            self._early.append(media)
            return
        if media.stream_sid and media.stream_sid != self.start.stream_sid:
            raise FeedError(f"media for another streamSid {media.stream_sid[:40]!r}", fatal=False)
        samples = DECODERS[self.start.encoding](media.payload)
        buffer = self._track(media.track)
        for event in buffer.push(media.chunk, media.timestamp, samples):
            self._emit(event)

    def _track(self, track: str) -> ReorderBuffer:
        buffer = self.buffers.get(track)
        if buffer is None:
            start = self.start
            assert start is not None
            rate = start.sample_rate
            buffer = ReorderBuffer(track, rate, self.reorder_window, int(self.max_gap_s * rate))
            self.buffers[track] = buffer
            labels = {**start.custom_parameters, "callSid": start.call_sid, "track": track}
            labels.update(streamSid=start.stream_sid, accountSid=start.account_sid)
            self._open(track, TRACK_LEGS[track], start.call_sid or start.stream_sid, labels, rate)
        return buffer

    def _flush(self) -> None:
        for buffer in self.buffers.values():
            for event in buffer.flush():
                self._emit(event)
        if self._early:
            self._emit(ProtocolViolation(f"{len(self._early)} media frames without 'start'", False))
            self._early = []


# -- request signature ----------------------------------------------------------------------

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | None


def compute_signature(auth_token: str, url: str, params: Params = None) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1 over the URL then each POST param.

    Params are sorted by name and appended as ``name`` + ``value`` with no separators (a name
    with several values contributes each, sorted). A websocket upgrade is a GET, so Twilio
    signs just the full ``wss://`` URL, query string included.
    """
    pairs: dict[str, set[str]] = {}
    items = params.items() if isinstance(params, Mapping) else (params or ())
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        pairs.setdefault(name, set()).update(values)
    data = url + "".join(name + value for name in sorted(pairs) for value in sorted(pairs[name]))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_signature(auth_token: str, url: str, params: Params, signature: str | None) -> bool:
    """True when ``signature`` matches ``url`` as given, or with its default port added/removed.

    Twilio may sign ``https://host/x`` while a proxy shows ``https://host:443/x`` (or the
    reverse), so both spellings are tried, as Twilio's own helper libraries do.
    """
    if not auth_token or not signature:
        return False
    try:
        expected = [compute_signature(auth_token, u, params) for u in _url_variants(url)]
    except (ValueError, UnicodeError):
        return False
    return any(hmac.compare_digest(e.encode(), signature.encode()) for e in expected)


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.username is not None or default is None or not host:
        return [url]
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    without = urlunsplit(parts._replace(netloc=host)) if parts.port in (None, default) else url
    return list(dict.fromkeys([url, with_port, without]))
