"""Real peers for the WebRTC and dashboard tests: an in-process daemon, an events client, a
sender."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from streamd.app.daemon import Daemon
from streamd.config import parse_config

if TYPE_CHECKING:
    from streamd.ingest.webrtc.source import WebRtcSource


def daemon_config(models: Path, store: Path, **sections: Any) -> Any:
    data: dict[str, Any] = {
        "server": {"port": 0},
        "model": {"dir": str(models), "providers": ["cpu"], "batch_wait_ms": 5},
        "store": {"path": str(store)},
        "service": {"grace_s": 5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(data, "test", environ={})


@contextlib.asynccontextmanager
async def running_daemon(config: Any) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def server_url(daemon: Daemon) -> str:
    """The daemon's HTTP base URL: ``daemon_config`` always turns the server on."""
    assert daemon.server is not None, "the daemon's HTTP server is not running"
    return daemon.server.url


def webrtc_source(daemon: Daemon) -> WebRtcSource:
    """The daemon's WebRTC source, for tests that look at its peers (aiortc is imported lazily)."""
    from streamd.ingest.webrtc.source import WebRtcSource

    [source] = [s for s in daemon.sources if isinstance(s, WebRtcSource)]
    return source


class EventsClient:
    """Reads ``/v1/events`` the way any subscriber does, and keeps every event."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EventsClient:
        self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        ws = await self._session.ws_connect(f"{self.url}/v1/events", headers=headers)
        self._task = asyncio.create_task(self._read(ws))
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self._changed.set()

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()

    def of(self, type_: str, source: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == type_
            and (source is None or e.get("stream", {}).get("source") == source)
        ]

    async def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"condition not met within {timeout} s; "
                    f"events: {[e['type'] for e in self.events]}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))


async def post_offer(
    url: str, body: Any, token: str | None = None, raw: str | None = None, query: str = ""
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        kwargs: dict[str, Any] = (
            {"data": raw, "headers": {**headers, "Content-Type": "application/json"}}
            if raw is not None
            else {"json": body, "headers": headers}
        )
        async with s.post(f"{url}/v1/webrtc/offer{query}", **kwargs) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except json.JSONDecodeError:
                return r.status, text


class WavSender:
    """A sending ``RTCPeerConnection`` that plays a WAV file in real time (aiortc's MediaPlayer)."""

    def __init__(self, wav: Path, loop: bool = False) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection
        from aiortc.contrib.media import MediaPlayer

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.player = MediaPlayer(str(wav), loop=loop)
        assert self.player.audio is not None
        self.pc.addTrack(self.player.audio)
        self.answer: dict[str, Any] = {}

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def connect(
        self, url: str, labels: dict[str, str] | None = None, token: str | None = None
    ) -> int:
        from aiortc import RTCSessionDescription

        status, body = await post_offer(
            url, {"sdp": await self.offer(), "type": "offer", "labels": labels or {}}, token
        )
        if status == 200:
            self.answer = body
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=body["sdp"], type=body["type"])
            )
        return status

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert self.pc.connectionState == "connected", self.pc.connectionState

    async def wait_played(self, timeout: float) -> None:
        track = self.player.audio
        assert track is not None
        deadline = time.monotonic() + timeout
        while track.readyState != "ended" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert track.readyState == "ended", "the player did not finish in time"

    async def close(self) -> None:
        await self.pc.close()
