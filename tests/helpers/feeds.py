"""Real peers for the contact-center feed tests (not a test module).

Speech from ../shared encoded the way each platform sends it, protocol clients that talk to an
in-process daemon over real loopback sockets, and the check that a feed's window scores are what
``streamd score`` gives on the same audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import ClientConnection, connect

from streamd.app.daemon import Daemon
from streamd.codecs.g711 import ulaw_decode, ulaw_encode
from streamd.offline.channel import g711_roundtrip
from streamd.offline.score import score_clips_async
from streamd.protocols.feeds.audiohook import format_duration
from streamd.protocols.feeds.audiosocket import Kind, build_frame

from tests.helpers.webrtc import EventsClient, daemon_config, running_daemon

ROOT = Path(__file__).resolve().parents[2]
LIBRISPEECH = (
    ROOT.parent
    / "shared"
    / "data"
    / "resemble-ai__Resemblyzer"
    / "audio_data"
    / "librispeech_test-other"
)
Event = dict[str, Any]
Window = tuple[float, float, float]  # start_s, end_s, score

# -- audio ---------------------------------------------------------------------------------------


def speech(seconds: float, offset: int = 0) -> np.ndarray:
    """``seconds`` of real read speech (LibriSpeech, 16 kHz float), from clip ``offset`` on."""
    from streamd.pipeline.audio import load_audio

    clips = sorted(LIBRISPEECH.rglob("*.flac")) if LIBRISPEECH.exists() else []
    if not clips:
        pytest.skip(f"no LibriSpeech clips under {LIBRISPEECH}")
    n = int(seconds * 16000)
    parts: list[np.ndarray] = []
    for i in range(offset, offset + len(clips)):
        parts.append(load_audio(clips[i % len(clips)]))
        if sum(map(len, parts)) >= n:
            break
    return np.concatenate(parts)[:n]


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def narrowband(audio_16k: np.ndarray) -> np.ndarray:
    """What a phone switch hands the platform: 8 kHz int16."""
    return to_pcm16(np.asarray(soxr.resample(audio_16k, 16000, 8000), dtype=np.float32))


def ulaw_8k(audio_16k: np.ndarray) -> tuple[bytes, np.ndarray]:
    """mu-law bytes at 8 kHz, and what decoding them gives (the audio the daemon should score)."""
    coded = ulaw_encode(narrowband(audio_16k))
    return coded, ulaw_decode(coded)


def chunks(data: bytes | np.ndarray, size: int) -> list[Any]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- the daemon ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def feed_daemon(
    models: Path, tmp: Path, server: dict[str, Any] | None = None, **feeds: dict[str, Any]
) -> AsyncIterator[tuple[Daemon, EventsClient]]:
    """An in-process daemon with the given feeds on loopback ports, and a ``/v1/events`` reader."""
    enabled = {k: {"enabled": True, **v} for k, v in feeds.items()}
    cfg = daemon_config(
        models,
        tmp / "events.db",
        sources={"webrtc": {"enabled": False}, **enabled},
        model={"name": "tiny"},
        server=server or {},
    )
    async with running_daemon(cfg) as daemon:
        assert daemon.server is not None
        async with EventsClient(daemon.server.url, (cfg.server.tokens or [None])[0]) as events:
            await asyncio.sleep(0.05)  # subscribed before any stream starts
            yield daemon, events


def ws_url(daemon: Daemon, path: str, query: str = "") -> str:
    assert daemon.server is not None
    return f"ws://127.0.0.1:{daemon.server.port}{path}" + (f"?{query}" if query else "")


def source(daemon: Daemon, name: str) -> Any:
    return next(s for s in daemon.sources if s.name == name)


def ws_connect(url: str, **kw: Any) -> Any:
    return connect(url, max_size=None, open_timeout=10, close_timeout=5, **kw)


async def send_paced(ws: ClientConnection, messages: list[Any], every: int = 25) -> None:
    """Send as fast as the daemon takes them, yielding now and then so other peers interleave."""
    for i, m in enumerate(messages):
        await ws.send(m)
        if i % every == every - 1:
            await asyncio.sleep(0.002)


def abort(ws: ClientConnection) -> None:
    """Drop the TCP connection with no websocket close frame: a crashed or cut-off platform."""
    ws.transport.abort()


# -- events --------------------------------------------------------------------------------------


def of(events: list[Event], type_: str, stream_id: str | None = None) -> list[Event]:
    return [
        e
        for e in events
        if e["type"] == type_ and (stream_id is None or e["stream"]["stream_id"] == stream_id)
    ]


def ended(n: int, source: str) -> Any:
    return lambda events: (
        len([e for e in of(events, "stream.ended") if e["stream"]["source"] == source]) >= n
    )


def started_by_leg(events: list[Event], source: str) -> dict[str, Event]:
    return {
        e["stream"]["leg"]: e
        for e in of(events, "stream.started")
        if e["stream"]["source"] == source
    }


def windows(events: list[Event], stream_id: str) -> list[Window]:
    return [
        (e["window"]["start_s"], e["window"]["end_s"], e["score"])
        for e in of(events, "window.scored", stream_id)
    ]


# -- scores against ``streamd score`` ------------------------------------------------------------


async def reference(
    daemon: Daemon,
    decoded: dict[str, tuple[np.ndarray, int]],
    clean: dict[str, np.ndarray] | None = None,
) -> dict[str, list[Window]]:
    """Window scores ``streamd score`` gives each clip: same config, model and code path.

    ``decoded``: what the feed carried, as the daemon should decode it (key -> PCM, rate).
    ``clean``: the 16 kHz originals, scored as ``KEY-clean`` and, through ``g711_roundtrip``,
    as ``KEY-g711``.
    """
    assert daemon.detector is not None
    items = [(k, pcm, rate) for k, (pcm, rate) in decoded.items()]
    for key, audio in (clean or {}).items():
        items += [(f"{key}-clean", audio, 16000), (f"{key}-g711", g711_roundtrip(audio), 16000)]
    reports = await score_clips_async(items, daemon.config, daemon.detector)
    return {
        r.path: [(w["window"]["start_s"], w["window"]["end_s"], w["score"]) for w in r.windows]
        for r in reports
    }


def assert_same_windows(live: list[Window], ref: list[Window], tol: float = 2e-6) -> None:
    """The feed delivered exactly the reference audio: same windows, same scores."""
    assert len(live) >= 3, live
    assert [w[:2] for w in live] == [w[:2] for w in ref], (live, ref)
    diffs = [abs(a[2] - b[2]) for a, b in zip(live, ref, strict=True)]
    assert max(diffs) <= tol, (max(diffs), live, ref)


def assert_codec_explains(live: list[Window], clean: list[Window], simulated: list[Window]) -> None:
    """Against the clean 16 kHz audio, the feed's scores move no more than the codec explains.

    ``simulated`` scores the clean audio after ``g711_roundtrip`` (8 kHz, companding, back to
    16 kHz): how far the channel alone moves each window. The feed may move a window up to
    twice that (its 8 to 16 kHz conversion is streamed, the simulation's is not), never more.
    """

    def near(w: Window, others: list[Window], tol: float) -> float | None:
        return next(
            (o[2] for o in others if abs(o[0] - w[0]) <= tol and abs(o[1] - w[1]) <= tol), None
        )

    # The simulation sees the live audio, so its windows match to a VAD frame or so. On the
    # wideband original, VAD may start speech a few frames apart (the band limit moves it too).
    found = [(w[2], near(w, clean, 0.25), near(w, simulated, 0.061)) for w in live]
    pairs = [(s, c, g) for s, c, g in found if c is not None and g is not None]
    assert len(pairs) >= max(2, len(live) // 2), (live, clean, simulated)
    moved = max(abs(s - c) for s, c, _ in pairs)
    explained = max(abs(g - c) for _, c, g in pairs)
    assert moved <= 2 * explained + 1e-5, (moved, explained, pairs)


# -- Twilio --------------------------------------------------------------------------------------

TWILIO_CALL = "CA" + "1" * 32
TWILIO_STREAM = "MZ" + "2" * 32
TWILIO_ACCOUNT = "AC" + "3" * 32


class TwilioMessages:
    """Media Streams JSON as Twilio writes it, for one ``<Stream>``."""

    def __init__(self, call: str = TWILIO_CALL, stream: str = TWILIO_STREAM) -> None:
        self.call, self.stream, self.seq = call, stream, 0

    def _msg(self, event: str, **body: Any) -> str:
        self.seq += 1
        return json.dumps(
            {"event": event, "sequenceNumber": str(self.seq), "streamSid": self.stream, **body}
        )

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, tracks: list[str], **params: str) -> str:
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        return self._msg(
            "start",
            start={
                "streamSid": self.stream,
                "accountSid": TWILIO_ACCOUNT,
                "callSid": self.call,
                "tracks": tracks,
                "customParameters": params,
                "mediaFormat": fmt,
            },
        )

    def media(self, track: str, chunk: int, payload: bytes) -> str:
        media = {
            "track": track,
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * 20),
            "payload": base64.b64encode(payload).decode(),
        }
        return self._msg("media", media=media)

    def mark(self, name: str) -> str:
        return self._msg("mark", mark={"name": name})

    def dtmf(self, digit: str) -> str:
        return self._msg("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> str:
        return self._msg("stop", stop={"accountSid": TWILIO_ACCOUNT, "callSid": self.call})

    def track_media(self, track: str, ulaw: bytes, skip: frozenset[int] = frozenset()) -> list[str]:
        """20 ms frames of one track, ``chunk`` from 1; chunks in ``skip`` are never sent (lost)."""
        return [
            self.media(track, i + 1, p)
            for i, p in enumerate(chunks(ulaw, 160))
            if i + 1 not in skip
        ]


def shuffle_and_duplicate(messages: list[str], every: int = 7) -> list[str]:
    """What a carrier that does not keep order does: swaps neighbours, moves one 3 ahead,
    resends."""
    out = list(messages)
    for i in range(3, len(out) - 4, every):
        out[i], out[i + 1] = out[i + 1], out[i]
        if i % 3 == 0:
            out.insert(i + 4, out.pop(i))
        if i % 2 == 0:
            out.insert(i + 2, out[i])
    return out


def interleave(*tracks: list[str]) -> list[str]:
    out: list[str] = []
    for i in range(max(map(len, tracks))):
        out.extend(t[i] for t in tracks if i < len(t))
    return out


# -- AudioHook -----------------------------------------------------------------------------------

AH_ORG = "d7934305-0972-4844-938e-9060eef73d05"
AH_CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
AH_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"


def audiohook_headers(session_id: str, key: str = AH_KEY, org: str = AH_ORG) -> dict[str, str]:
    return {
        "Audiohook-Session-Id": session_id,
        "Audiohook-Organization-Id": org,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": key,
    }


class AudioHookClient:
    """What Genesys Cloud does on its side of one AudioHook session, over a real websocket."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws, self.id = ws, session_id
        self.seq = self.serverseq = 0
        self.samples = 0

    async def send(self, type_: str, parameters: dict[str, Any] | None = None) -> None:
        self.seq += 1
        await self.ws.send(
            json.dumps(
                {
                    "version": "2",
                    "id": self.id,
                    "type": type_,
                    "seq": self.seq,
                    "serverseq": self.serverseq,
                    "position": format_duration(self.samples / 8000),
                    "parameters": parameters or {},
                }
            )
        )

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.serverseq = message["seq"]
        return message

    async def open(self, conversation: str = AH_CONVERSATION, org: str = AH_ORG) -> dict[str, Any]:
        stereo = {
            "type": "audio",
            "format": "PCMU",
            "channels": ["external", "internal"],
            "rate": 8000,
        }
        mono = {"type": "audio", "format": "L16", "channels": ["external"], "rate": 8000}
        await self.send(
            "open",
            {
                "organizationId": org,
                "conversationId": conversation,
                "language": "en-US",
                "participant": {
                    "id": str(uuid.uuid4()),
                    "ani": "+13175550123",
                    "aniName": "John Doe",
                    "dnis": "+13175550199",
                },
                "media": [mono, stereo],
            },
        )
        return await self.receive()

    async def audio(self, external: np.ndarray, internal: np.ndarray, frame: int = 160) -> None:
        """Stereo PCMU, external (customer) left and internal (agent) right, 20 ms a frame."""
        frames = [
            np.stack(
                [np.frombuffer(ulaw_encode(a), np.uint8), np.frombuffer(ulaw_encode(b), np.uint8)],
                1,
            ).tobytes()
            for a, b in zip(chunks(external, frame), chunks(internal, frame), strict=True)
        ]
        self.samples += len(external)
        await send_paced(self.ws, frames)


# -- AudioSocket ---------------------------------------------------------------------------------


def audiosocket_call(
    call: uuid.UUID, pcm: np.ndarray, kind: int = Kind.SLIN, frame_ms: int = 20
) -> list[bytes]:
    """The UUID frame, then signed-linear little-endian frames of ``frame_ms``."""
    rate = {Kind.SLIN: 8000, Kind.SLIN16: 16000}[Kind(kind)]
    size = rate * frame_ms // 1000
    return [build_frame(Kind.UUID, call.bytes)] + [
        build_frame(kind, c.astype("<i2").tobytes()) for c in chunks(pcm, size)
    ]


async def tcp_send(writer: asyncio.StreamWriter, frames: list[bytes], every: int = 25) -> None:
    for i, f in enumerate(frames):
        writer.write(f)
        if i % every == every - 1:
            await writer.drain()
            await asyncio.sleep(0.002)
    await writer.drain()


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    """True once the daemon closed the connection (EOF or reset) within ``timeout``."""
    try:
        while await asyncio.wait_for(reader.read(4096), timeout):
            pass
    except ConnectionError:
        pass
    return True
