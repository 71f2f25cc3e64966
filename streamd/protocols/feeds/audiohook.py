"""Genesys Cloud AudioHook (protocol version 2), server side, sans-I/O.

The client (Genesys) opens a websocket with ``X-API-KEY`` and ``Audiohook-*`` headers, then
runs an ``open`` transaction: it offers media formats, the server answers ``opened`` with the
one it picked, and only then sends binary audio. Every JSON message has ``version`` "2", the
session ``id``, a ``type``, a ``seq`` counting from 1 per sender and ``parameters``; client
messages add ``serverseq`` (last server seq seen) and ``position`` (ISO-8601 duration of audio
so far, e.g. ``PT12.34S``); server messages add ``clientseq`` (last client seq seen).

We accept PCMU or L16 (little-endian) at 8000 Hz with channels ``external`` (customer, leg
``caller``) and/or ``internal`` (agent, leg ``agent``), preferring stereo, then PCMU. Stereo
frames interleave samples in the order of the negotiated ``channels`` list.

Pause: the client sends no audio while paused, and its ``position`` does not count the pause;
``resumed`` says how much audio was ``discarded``. We turn that into a ``Gap`` (reason
``pause``) so stream time keeps following the call, as a packet loss would. A ``discarded``
message (audio dropped, position advanced) is a ``Gap`` with reason ``discarded``.

Errors: the server signals them with ``disconnect`` (reason ``error`` or ``unauthorized`` and an
``info`` text; the numeric codes 4xx/5xx belong to the client's ``error`` message, so we put
ours in the info text), then expects the client to ``close``, which it still answers with
``closed``. A conversation id of all zeros is Genesys's connection probe: it gets ``opened``
but opens no streams.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from streamd.codecs.g711 import ulaw_decode
from streamd.protocols.credentials import one_of
from streamd.protocols.feeds.base import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    Audio,
    FeedError,
    FeedEvent,
    FeedSession,
    Gap,
    Notice,
    Reply,
    as_dict,
    as_int,
    as_str,
    check_size,
    clean_labels,
    load_json_object,
    pcm16_frames,
    split_channels,
)

NULL_UUID = "00000000-0000-0000-0000-000000000000"
CHANNEL_LEGS = {"external": "caller", "internal": "agent"}
MEDIA_RATE = 8000
MAX_TEXT_BYTES = 65535
MAX_BINARY_BYTES = 64 * 1024
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DURATION = re.compile(r"PT(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,12}(?:\.\d{0,9})?|\.\d{1,9})S)?")


def parse_duration(text: Any) -> float:
    """``PT12.34S`` (hours and minutes tolerated) to seconds; ``FeedError`` otherwise."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise FeedError(f"not an ISO-8601 duration: {text!r:.40}")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def format_duration(seconds: float) -> str:
    """Seconds to the ``PT<seconds>S`` form AudioHook uses, to the microsecond."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and non-negative, got {seconds}")
    return "PT" + (f"{seconds:.6f}".rstrip("0").rstrip(".") or "0") + "S"


def _uuid(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise FeedError(f"{name} must be a UUID, got {value!r:.40}")
    return value.lower()


@dataclass(frozen=True)
class ClientMessage:
    type: str
    id: str
    seq: int
    serverseq: int
    position: float
    parameters: dict[str, Any]


def parse_message(data: str | bytes, max_bytes: int = MAX_TEXT_BYTES) -> ClientMessage:
    """Check the envelope of one client text message; ``FeedError`` if it is not well formed."""
    msg = load_json_object(data, max_bytes)
    if msg.get("version") != "2":
        raise FeedError(f'version must be "2", got {msg.get("version")!r:.20}')
    return ClientMessage(
        type=as_str(msg.get("type"), "type", max_chars=64),
        id=_uuid(msg.get("id"), "id"),
        seq=as_int(msg.get("seq"), "seq"),
        serverseq=as_int(msg.get("serverseq"), "serverseq"),
        position=parse_duration(msg.get("position")),
        parameters=as_dict(msg.get("parameters"), "parameters"),
    )


@dataclass(frozen=True)
class MediaFormat:
    format: str
    channels: tuple[str, ...]
    rate: int = MEDIA_RATE

    def to_json(self) -> dict[str, Any]:
        return dict(type="audio", format=self.format, channels=list(self.channels), rate=self.rate)


def choose_media(offered: Any, formats: tuple[str, ...] = ("PCMU", "L16")) -> MediaFormat | None:
    """The offer we take: stereo before mono, then by ``formats`` order, then the client's order.

    Entries we do not understand are skipped rather than refused, so a client that also
    offers formats added to the protocol later still gets a session.
    """
    if not isinstance(offered, list):
        raise FeedError("open.media must be a list")
    best: tuple[int, int, int, MediaFormat] | None = None
    for i, item in enumerate(offered[:32]):
        if not isinstance(item, dict) or item.get("type", "audio") != "audio":
            continue
        fmt, rate, channels = item.get("format"), item.get("rate"), item.get("channels")
        if fmt not in formats or isinstance(rate, bool) or rate != MEDIA_RATE:
            continue
        if not isinstance(channels, list) or not 1 <= len(channels) <= 2:
            continue
        if not all(isinstance(c, str) and c in CHANNEL_LEGS for c in channels):
            continue
        if len(set(channels)) != len(channels):
            continue
        rank = (-len(channels), formats.index(fmt), i, MediaFormat(fmt, tuple(channels)))
        best = rank if best is None or rank[:3] < best[:3] else best
    return best[3] if best else None


def check_auth(
    headers: Mapping[str, str], *, api_keys: Collection[str], allowed_orgs: Collection[str] = ()
) -> str | None:
    """Check the upgrade request's headers before accepting it; the reason it fails, or None.

    ``X-API-KEY`` must be one of ``api_keys`` (when any are configured) and
    ``Audiohook-Organization-Id`` in ``allowed_orgs`` (when any are configured). The adapter
    answers a failure with HTTP 401 before the upgrade.
    """
    lower = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    if api_keys:
        key = lower.get("x-api-key", "")
        if not key:
            return "missing X-API-KEY header"
        if not one_of(key, api_keys):
            return "X-API-KEY is not one of the configured keys"
    if allowed_orgs:
        org = lower.get("audiohook-organization-id", "")
        if not org:
            return "missing Audiohook-Organization-Id header"
        if org.lower() not in {o.lower() for o in allowed_orgs}:
            return f"organization {org[:40]!r} is not in the allow list"
    if not _UUID.fullmatch(lower.get("audiohook-session-id", "")):
        return "missing or malformed Audiohook-Session-Id header"
    return None


class AudioHookSession(FeedSession):
    """AudioHook messages and audio in; replies and stream events out. Never raises.

    ``headers`` are the upgrade request's (for the session, organization and correlation
    ids); ``allowed_orgs`` is checked again against the ``open`` message. ``pause()`` and
    ``resume()`` ask the client to pause or resume the audio.
    """

    source = "audiohook"

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        allowed_orgs: Collection[str] = (),
        formats: tuple[str, ...] = ("PCMU", "L16"),
        max_text_bytes: int = MAX_TEXT_BYTES,
        max_binary_bytes: int = MAX_BINARY_BYTES,
        start_paused: bool = False,
        close_grace_s: float = 5.0,
    ) -> None:
        super().__init__()
        lower = {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}
        self.id = lower.get("audiohook-session-id", "").lower() or None
        self.organization_id = lower.get("audiohook-organization-id", "").lower() or None
        self.correlation_id = lower.get("audiohook-correlation-id", "")
        self.allowed_orgs = {o.lower() for o in allowed_orgs}
        self.formats = formats
        self.max_text_bytes = max_text_bytes
        self.max_binary_bytes = max_binary_bytes
        self.start_paused = start_paused
        self.close_grace_s = close_grace_s
        self.state = "preparing"  # -> active <-> paused -> closed; or -> disconnecting -> closed
        self.media: MediaFormat | None = None
        self.probe = False
        self.seq = 0
        self.clientseq = 0
        self.client_position = 0.0
        self.samples = 0

    @property
    def position(self) -> float:
        """Seconds of audio received, which is what the client's ``position`` should say."""
        return self.samples / MEDIA_RATE

    def receive_text(self, data: str | bytes) -> list[FeedEvent]:
        if self.state == "disconnecting":
            return self._answer_close(data)
        return self._run(self._on_text, data)

    def receive_bytes(self, data: bytes) -> list[FeedEvent]:
        return self._run(self._on_bytes, data)

    def pause(self) -> list[FeedEvent]:
        return self._run(self._request, "pause")

    def resume(self) -> list[FeedEvent]:
        return self._run(self._request, "resume")

    # -- messages -----------------------------------------------------------------------------

    def _send(self, type_: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        message = {"version": "2", "type": type_, "seq": self.seq, "clientseq": self.clientseq}
        message.update(id=self.id or NULL_UUID, parameters=parameters)
        self._emit(Reply(message))

    def _request(self, type_: str) -> None:
        if self.state in ("active", "paused"):
            self._send(type_, {})
        elif self.state == "preparing":
            self.start_paused = type_ == "pause"

    def _on_text(self, data: str | bytes) -> None:
        msg = parse_message(data, self.max_text_bytes)
        if msg.seq != self.clientseq + 1:
            raise FeedError(f"seq {msg.seq} does not follow {self.clientseq}")
        self.clientseq = msg.seq
        if msg.serverseq > self.seq:
            raise FeedError(f"serverseq {msg.serverseq} is ahead of the server's seq {self.seq}")
        if self.id is None:
            self.id = msg.id
        elif msg.id != self.id:
            raise FeedError(f"message id {msg.id} is not this session's id {self.id}")
        self.client_position = msg.position
        handler = getattr(self, f"_on_{msg.type}", None) if msg.type in _CLIENT_TYPES else None
        if handler is None:
            raise FeedError(f"{msg.type[:40]!r} is not a supported client message")
        handler(msg.parameters)

    def _on_open(self, params: dict[str, Any]) -> None:
        if self.state != "preparing":
            raise FeedError(f"'open' in state {self.state}", code=409)
        org = _uuid(params.get("organizationId"), "organizationId")
        conversation = _uuid(params.get("conversationId"), "conversationId")
        if self.organization_id and org != self.organization_id:
            raise FeedError("organizationId differs from the Audiohook-Organization-Id", code=401)
        if self.allowed_orgs and org not in self.allowed_orgs:
            raise FeedError(f"organization {org} is not allowed", code=401)
        participant = as_dict(params.get("participant", {}), "participant")
        media = choose_media(params.get("media"), self.formats)
        if media is None:
            raise FeedError("no offer is PCMU/L16, 8000 Hz, external/internal", code=415)
        self.media = media
        self._send("opened", {"media": [media.to_json()], "startPaused": self.start_paused})
        self.state = "active"
        if conversation == NULL_UUID:
            self.probe = True
            self._emit(Notice("probe", {"organizationId": org}))
            return
        labels = clean_labels(
            {
                "conversationId": conversation,
                "organizationId": org,
                "sessionId": self.id,
                "correlationId": self.correlation_id or None,
                "participantId": participant.get("id"),
                "ani": participant.get("ani"),
                "aniName": participant.get("aniName"),
                "dnis": participant.get("dnis"),
                "language": params.get("language"),
            }
        )
        for channel in media.channels:
            self._open(
                channel,
                CHANNEL_LEGS[channel],
                conversation,
                {**labels, "channel": channel},
                media.rate,
            )

    def _on_close(self, params: dict[str, Any]) -> None:
        reason = params.get("reason", "end")
        self._send("closed", {})
        self._close_streams(reason[:40] if isinstance(reason, str) else "end")
        self.state = "closed"
        self._finish(CLOSE_NORMAL, "closed", self.close_grace_s)

    def _on_ping(self, params: dict[str, Any]) -> None:
        self._send("pong", {})
        if "rtt" in params:
            self._emit(Notice("ping", {"rtt_s": parse_duration(params["rtt"])}))

    def _on_paused(self, params: dict[str, Any]) -> None:
        if self.state != "active":
            raise FeedError(f"'paused' in state {self.state} ignored", fatal=False, code=409)
        self.state = "paused"
        self._emit(Notice("paused", {"position_s": self.client_position}))

    def _on_resumed(self, params: dict[str, Any]) -> None:
        if self.state not in ("paused", "active"):
            raise FeedError(f"'resumed' in state {self.state} ignored", fatal=False, code=409)
        discarded = parse_duration(params.get("discarded", "PT0S"))
        self.state = "active"
        self._gaps(discarded, "pause")
        self._emit(
            Notice("resumed", {"position_s": self.client_position, "discarded_s": discarded})
        )

    def _on_discarded(self, params: dict[str, Any]) -> None:
        self._gaps(parse_duration(params.get("discarded", "PT0S")), "discarded")

    def _on_update(self, params: dict[str, Any]) -> None:
        self._emit(Notice("update", clean_labels(params)))

    def _on_error(self, params: dict[str, Any]) -> None:
        code = params.get("code")
        text = params.get("message")
        raise FeedError(f"client error {code!r:.10}: {text!r:.200}", fatal=False, code=500)

    def _gaps(self, seconds: float, reason: str) -> None:
        n = round(seconds * MEDIA_RATE)
        if n > 0:
            for key in self.streams:
                self._emit(Gap(key, n, reason))

    # -- audio --------------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        check_size(data, self.max_binary_bytes, "binary frame")
        if self.state in ("closed", "disconnecting"):
            return
        if self.state != "active" or self.media is None:
            raise FeedError(f"binary frame in state {self.state} (not opened, or paused)", code=409)
        channels = len(self.media.channels)
        if self.media.format == "PCMU":
            if len(data) % channels:
                raise FeedError(
                    f"PCMU frame of {len(data)} bytes splits a {channels}-channel sample"
                )
            frames = ulaw_decode(data).reshape(-1, channels)
        else:
            frames = pcm16_frames(data, channels, what="L16 frame")
        self.samples += frames.shape[0]
        if not self.probe:
            for channel, mono in zip(self.media.channels, split_channels(frames), strict=True):
                self._emit(Audio(channel, mono))

    # -- errors -------------------------------------------------------------------------------

    def _fail(self, message: str, code: int, close_code: int) -> None:
        """Tell the client why (``disconnect``), end the streams, and wait for its ``close``."""
        unauthorized = code == 401
        reason = "unauthorized" if unauthorized else "error"
        if self.state not in ("closed", "disconnecting"):
            self._send("disconnect", {"reason": reason, "info": f"{code}: {message}"[:256]})
        self._close_streams("unauthorized" if unauthorized else "error")
        self.state = "disconnecting"
        self._finish(CLOSE_POLICY if unauthorized else close_code, message, self.close_grace_s)

    def _answer_close(self, data: str | bytes) -> list[FeedEvent]:
        """After a ``disconnect`` only the client's ``close`` still matters: answer ``closed``."""
        try:
            msg = parse_message(data, self.max_text_bytes)
        except FeedError:
            return []
        if msg.type == "close":
            self.clientseq = max(self.clientseq, msg.seq)
            self._send("closed", {})
            self.state = "closed"
        return self._take()


_CLIENT_TYPES = frozenset(
    {"open", "close", "ping", "paused", "resumed", "discarded", "update", "error"}
)
