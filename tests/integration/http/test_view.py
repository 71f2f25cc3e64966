"""The HTTP server runs on its narrow view alone: no Daemon, real hub, scorer, bus and sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from streamd.config import parse_config
from streamd.events.bus import EventBus
from streamd.http.app import start_server
from streamd.http.view import HttpView, ModelFacts
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.scorer import Scorer

TOKEN = "view-token"


@dataclass
class State:
    """A DaemonState without a daemon: the flags /readyz and /metrics read."""

    ready: bool = False
    stopping: bool = False
    sources: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"sources": self.sources}


async def get_json(s: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with s.get(url) as r:
        return r.status, await r.json(content_type=None)


async def test_server_reads_only_its_view(tiny_model_dir: Path) -> None:
    cfg = parse_config(
        {
            "server": {"port": 0, "tokens": [TOKEN]},
            "model": {"dir": str(tiny_model_dir), "name": "tiny"},
            "alerts": {"raise": 0.7, "clear": 0.2},
        },
        environ={},
    )
    detector = Detector.load(resolve_manifest(cfg.model.dir, cfg.model.name), ["cpu"])
    scorer = Scorer(detector)
    await scorer.start()
    bus = EventBus(None)
    hub = StreamHub(cfg, detector, scorer, bus)
    state = State()
    view = HttpView(
        server=cfg.server,
        state=state,
        bus=bus,
        store=None,
        hub=hub,
        scorer=scorer,
        model=ModelFacts("tiny", "abc123", "cpu"),
        sources=[],
    )
    server = await start_server(view)
    q = f"?token={TOKEN}"
    try:
        async with aiohttp.ClientSession() as s:
            status, body = await get_json(s, server.url + "/readyz")
            assert status == 503 and body["reasons"] == ["not ready"]
            state.ready = True
            state.sources = [{"name": "rtp", "up": False}]
            status, body = await get_json(s, server.url + "/readyz")
            assert status == 503 and body["reasons"] == ["sources down: ['rtp']"]
            state.sources = [{"name": "rtp", "up": True}]
            status, body = await get_json(s, server.url + "/readyz")
            assert status == 200 and body["ready"] is True

            stream = hub.open_stream(StreamInfo.new(source="rtp", leg="caller"), 8000)
            status, info = await get_json(s, server.url + "/v1/dashboard/info" + q)
            assert status == 200 and info["thresholds"] == {"raise": 0.7, "clear": 0.2}
            assert info["provider"] == "cpu" and info["last_event_id"] == bus.last_id >= 1
            async with s.get(server.url + "/metrics" + q) as r:
                text = await r.text()
            assert 'streamd_model_info{name="tiny",provider="cpu",sha256="abc123"} 1.0' in text
            assert "streamd_streams_open 1.0" in text and "streamd_ready 1.0" in text
            await stream.close("test")

            hub.accepting = False
            status, body = await get_json(s, server.url + "/readyz")
            assert status == 503 and body["reasons"] == ["shutting down"]
    finally:
        await server.stop()
        await scorer.close()
