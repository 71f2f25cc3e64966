"""The HTTP port's edges against a real in-process daemon: half-open floods, cross-site pages,
wrong content types and credentials that are not UTF-8."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamd.http.app import GUARD

from tests.helpers.webrtc import daemon_config, running_daemon


def cfg(tmp_path: Path, models: Path, **server: Any) -> Any:
    return daemon_config(
        models,
        tmp_path / "e.db",
        server={"tokens": ["sekret"], **server},
        sources={"webrtc": {"enabled": True}},
        model={"name": "tiny"},
    )


async def raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return head


async def test_half_open_flood_is_capped_and_timed_out(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = cfg(tmp_path, tiny_model_dir, max_connections=50, header_timeout_s=1.0)
    async with running_daemon(config) as daemon:
        assert daemon.server is not None
        guard = daemon.server.runner.app[GUARD]
        port = daemon.server.port
        writers = []
        for _ in range(200):  # bounded: 200 connections that never finish their head
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            writers.append(w)
        peak = 0
        for _ in range(100):  # until the server saw all 200 (bounded: 10 s)
            peak = max(peak, guard.open)
            if guard.open + guard.refused + guard.timed_out >= 200:
                break
            await asyncio.sleep(0.1)
        assert peak <= 50 and guard.refused >= 150
        for _ in range(100):  # past header_timeout_s every half-open one goes (bounded: 10 s)
            if guard.open == 0:
                break
            await asyncio.sleep(0.1)
        assert guard.open == 0 and guard.timed_out >= 50
        async with aiohttp.ClientSession() as s, s.get(daemon.server.url + "/healthz") as r:
            assert r.status == 200  # the port serves again
        for w in writers:
            w.close()


async def test_websocket_origin_must_be_this_server_or_allowed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = cfg(tmp_path, tiny_model_dir, tokens=[], allowed_origins=["https://console.example"])
    async with running_daemon(config) as daemon:
        assert daemon.server is not None
        url = daemon.server.url + "/v1/events"
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(url, headers={"Origin": "https://evil.example"})
            assert err.value.status == 403
            for origin in (None, daemon.server.url, "https://console.example"):
                headers = {"Origin": origin} if origin else {}
                ws = await s.ws_connect(url, headers=headers)
                await ws.close()


async def test_offer_needs_json_and_bad_credentials_are_401(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with running_daemon(cfg(tmp_path, tiny_model_dir)) as daemon:
        assert daemon.server is not None
        auth = {"Authorization": "Bearer sekret"}
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                daemon.server.url + "/v1/webrtc/offer",
                data='{"type": "offer", "sdp": "v=0"}',
                headers={**auth, "Content-Type": "text/plain"},
            ) as r,
        ):
            assert r.status == 415 and "application/json" in await r.text()
        for path in (b"/metrics", b"/v1/events"):
            head = await raw_request(
                daemon.server.port,
                b"GET "
                + path
                + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\r\n\r\n",
            )
            assert head.split(b" ")[1] == b"401", head[:200]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
