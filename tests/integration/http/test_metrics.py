"""``/metrics``, ``/healthz`` and ``/readyz`` of a real in-process daemon that scored real files."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from streamd.app.daemon import Daemon
from streamd.config import parse_config
from streamd.events.schema import EVENT_TYPES
from streamd.ingest.files import FileSource
from streamd.pipeline.audio import StreamInfo

from tests.helpers.daemonproc import speech_wav

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str
) -> float:
    return m[(metric, tuple(sorted(labels.items())))]


async def get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with session.get(url, **kw) as r:
        return r.status, await r.text()


async def test_metrics_count_what_the_daemon_did(tiny_model_dir: Path, tmp_path: Path) -> None:
    files = [str(speech_wav(tmp_path / f"s{i}.wav", 9.0, offset=3 * i)) for i in range(2)]
    cfg = parse_config(
        {
            "server": {"port": 0, "tokens": [TOKEN]},
            "sources": {"files": files, "as_fast_as_possible": True, "webrtc": {"enabled": False}},
            "model": {"dir": str(tiny_model_dir), "name": "tiny", "batch_wait_ms": 50},
            "alerts": {"raise": 0.4, "clear": 0.3, "raise_after": 1},  # the tiny model scores ~0.5
            "store": {"path": str(tmp_path / "e.db")},
        },
        environ={},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    try:
        assert daemon.server is not None and daemon.store is not None and daemon.hub is not None
        assert daemon.detector is not None
        base = daemon.server.url
        source = next(s for s in daemon.sources if isinstance(s, FileSource))
        await asyncio.wait_for(source.wait(), 60)
        stored = Counter(e["type"] for e in daemon.store.read_since(0, limit=10_000))
        assert (
            stored["stream.ended"] == 2
            and stored["window.scored"] >= 6
            and stored["alert.raised"] == 2
        )

        async with aiohttp.ClientSession() as s:
            assert (await get(s, base + "/metrics"))[0] == 401
            assert (await get(s, base + "/metrics?token=wrong"))[0] == 401
            status, health = await get(s, base + "/healthz")
            assert status == 200 and '"ok"' in health
            status, ready = await get(s, base + "/readyz")
            assert status == 200 and '"provider": "cpu"' in ready and '"files"' in ready
            async with s.ws_connect(base + "/v1/events", headers=AUTH):
                await asyncio.sleep(0.05)
                status, text = await get(s, base + "/metrics", headers=AUTH)
            assert status == 200
            m = samples(text)

            windows = stored["window.scored"]
            assert value(m, "streamd_streams_total", source="file") == 2
            assert value(m, "streamd_streams_open") == 0
            assert value(m, "streamd_windows_scored_total") == windows
            assert value(m, "streamd_alerts_total", kind="raised") == stored["alert.raised"]
            assert value(m, "streamd_alerts_total", kind="cleared") == stored["alert.cleared"]
            assert value(m, "streamd_batch_size_sum") == windows
            batches = value(m, "streamd_batch_size_count")
            assert (
                1 <= batches <= windows and value(m, "streamd_inference_seconds_count") == batches
            )
            assert value(m, "streamd_inference_seconds_sum") > 0
            assert value(m, "streamd_window_latency_seconds_count") == windows
            assert value(m, "streamd_window_latency_seconds_bucket", le="+Inf") == windows
            assert (
                value(
                    m,
                    "streamd_model_info",
                    name="tiny",
                    provider="cpu",
                    sha256=daemon.detector.manifest.sha256 or "",
                )
                == 1
            )
            for t in EVENT_TYPES:
                assert value(m, "streamd_events_published_total", type=t) == stored[t], t
            assert (
                value(m, "streamd_ws_clients") == 1
                and value(m, "streamd_ws_clients_dropped_total") == 0
            )
            assert value(m, "streamd_last_event_id") == daemon.store.last_id()
            assert value(m, "streamd_ready") == 1
            assert value(m, "streamd_source_counter_total", source="files", name="finished") == 2
            # levels are gauges, not counters (no _total, may go down)
            assert value(m, "streamd_source_gauge", source="files", name="files") == 2
            assert (
                "streamd_source_counter_total",
                (("name", "files"), ("source", "files")),
            ) not in m

            # frames lost: counted while the stream is open and kept once it has closed
            stream = daemon.hub.open_stream(StreamInfo.new(source="rtp", leg="caller"), 8000)
            stream.note_lost(5)
            stream.write(np.zeros(800, np.int16))
            m = samples((await get(s, base + "/metrics", headers=AUTH))[1])
            assert (
                value(m, "streamd_frames_lost_total") == 5 and value(m, "streamd_streams_open") == 1
            )
            await stream.close("test")
            m = samples((await get(s, base + "/metrics", headers=AUTH))[1])
            assert (
                value(m, "streamd_frames_lost_total") == 5 and value(m, "streamd_streams_open") == 0
            )
            assert value(m, "streamd_streams_total", source="rtp") == 1
    finally:
        await daemon.stop()
    wal = tmp_path / "e.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # stop() flushed the WAL into the database


async def test_readyz_is_503_while_stopping(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "server": {"port": 0},
            "sources": {"webrtc": {"enabled": False}},
            "model": {"dir": str(tiny_model_dir)},
            "store": {"path": str(tmp_path / "e.db")},
        },
        environ={},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    try:
        assert daemon.server is not None
        url = daemon.server.url
        async with aiohttp.ClientSession() as s:
            assert (await get(s, url + "/readyz"))[0] == 200
            daemon.request_stop("test")
            status, body = await get(s, url + "/readyz")
            assert status == 503 and "shutting down" in body
            assert (await get(s, url + "/healthz"))[0] == 200
    finally:
        await daemon.stop()
