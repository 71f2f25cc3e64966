"""``/v1/events`` on a real aiohttp server with a real store: auth, filters, the replay/live seam,
and a client that never reads (closed with 1013 while a fast client keeps its latency)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web

from streamd.events.bus import EventBus
from streamd.events.schema import validate_event
from streamd.events.store import EventStore
from streamd.http.events_ws import EventsEndpoint

from tests.helpers.daemonproc import contiguous

MODEL = {"name": "m", "sha256": "ab" * 32}


@dataclass
class Server:
    bus: EventBus
    store: EventStore
    endpoint: EventsEndpoint
    url: str
    sent_at: dict[int, float]

    def publish(self, i: int, call_id: str = "c0", pad: int = 0) -> dict[str, Any]:
        stream = {
            "stream_id": f"{call_id}:caller",
            "call_id": call_id,
            "leg": "caller",
            "source": "sip",
            "labels": {"pad": "x" * pad},
        }
        t = time.perf_counter()
        event = self.bus.publish(
            "window.scored",
            stream,
            score=0.5,
            smoothed=0.5,
            window={"start_s": float(i), "end_s": i + 4.0},
            model=MODEL,
        )
        self.sent_at[event["id"]] = t
        return event


async def start(
    tmp_path: Path, tokens: list[str] | None = None, client_queue: int = 1000
) -> tuple[Server, web.AppRunner]:
    store = EventStore(tmp_path / "e.db")
    bus = EventBus(store)
    endpoint = EventsEndpoint(bus, store, tokens or [], client_queue)
    app = web.Application()
    app.router.add_get("/v1/events", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Server(bus, store, endpoint, f"http://127.0.0.1:{port}", {}), runner


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    opts = getattr(request, "param", {})
    srv, runner = await start(tmp_path, **opts)
    try:
        yield srv
    finally:
        await srv.endpoint.shutdown(2.0)
        await runner.cleanup()
        srv.store.close()


async def receive_ids(
    ws: aiohttp.ClientWebSocketResponse, last_id: int, timeout: float = 20
) -> list[int]:
    ids: list[int] = []
    while not ids or ids[-1] < last_id:
        msg = await ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        validate_event(event)
        ids.append(event["id"])
    return ids


@pytest.mark.parametrize("server", [{"tokens": ["s3cret", "other-token"]}], indirect=True)
async def test_auth_is_checked_before_the_upgrade(server: Server) -> None:
    url = server.url + "/v1/events"
    async with aiohttp.ClientSession() as s:
        for headers, query in [
            ({}, ""),
            ({"Authorization": "Bearer wrong"}, ""),
            ({}, "?token=wrong"),
            ({"Authorization": "Basic s3cret"}, ""),
        ]:
            async with s.get(
                url + query,
                headers={
                    **headers,
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ) as r:
                assert r.status == 401, (headers, query)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await r.json())["error"] == "unauthorized"
        async with (
            s.ws_connect(url, headers={"Authorization": "Bearer s3cret"}) as ws1,
            s.ws_connect(url + "?token=other-token") as ws2,
        ):
            await asyncio.sleep(0.05)
            event = server.publish(1)
            for ws in (ws1, ws2):
                assert json.loads((await ws.receive(timeout=5)).data)["id"] == event["id"]


async def test_bad_query_is_400(server: Server) -> None:
    async with aiohttp.ClientSession() as s:
        for query, word in [
            ("since=-1", "since"),
            ("since=abc", "since"),
            ("types=window.scored,bogus", "bogus"),
        ]:
            async with s.get(f"{server.url}/v1/events?{query}") as r:
                assert r.status == 400 and word in await r.text()


async def test_filters_apply_to_replay_and_live(server: Server) -> None:
    server.publish(0, "a")
    server.bus.publish(
        "stream.started",
        {"stream_id": "a:caller", "call_id": "a", "leg": "caller", "source": "sip", "labels": {}},
    )
    server.publish(1, "b")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{server.url}/v1/events?since=0&types=window.scored&call_id=a") as ws,
    ):
        await asyncio.sleep(0.05)
        server.publish(2, "b")
        live = server.publish(3, "a")
        got = [json.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
    assert [e["id"] for e in got] == [1, live["id"]]
    assert all(e["type"] == "window.scored" and e["stream"]["call_id"] == "a" for e in got)


# 4,000 events published in a burst while clients replay: each client's queue must hold the
# burst that arrives during its replay (events reach the fan-out in commit batches).
@pytest.mark.parametrize("server", [{"client_queue": 8000}], indirect=True)
async def test_no_gap_no_duplicate_across_the_replay_live_seam(server: Server) -> None:
    """Clients join at random moments with random ``since`` while events pour in."""
    total = 4000
    rng = random.Random(7)

    async def produce() -> None:
        for i in range(total):
            server.publish(i)
            if i % 20 == 0:  # ~0.6 s in all: every client (joining within 0.3 s) joins mid-stream
                await asyncio.sleep(0.003)

    async def client(delay: float, since: int | None) -> tuple[int | None, int, list[int]]:
        await asyncio.sleep(delay)
        if since is not None:
            since = min(since, server.bus.last_id)
        query = "" if since is None else f"?since={since}"
        seam = server.bus.last_id
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(server.url + "/v1/events" + query) as ws,
        ):
            return since, seam, await receive_ids(ws, total)

    producer = asyncio.create_task(produce())
    clients = [
        client(rng.uniform(0, 0.3), rng.choice([None, 0, rng.randrange(0, 3000)]))
        for _ in range(10)
    ]
    results = await asyncio.wait_for(asyncio.gather(*clients), 120)
    await producer
    for since, seam_before, ids in results:
        assert len(ids) == len(set(ids)), "duplicate ids"
        assert contiguous(ids), f"gap in ids (since={since})"
        assert ids[-1] == total
        if since is not None:
            assert ids[0] == since + 1
        else:
            assert ids[0] > seam_before  # live only: nothing from before it connected


async def _never_reading_client(url: str) -> Any:
    """A websocket client with a tiny receive buffer that stops reading after a few frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return await websockets.connect(
        url.replace("http", "ws") + "/v1/events", sock=sock, max_queue=2, compression=None
    )


# 256: events reach the fan-out in commit batches (events/bus.py), so a reading client's queue
# must hold a batch; the never-reading one still overflows.
@pytest.mark.parametrize("server", [{"client_queue": 256}], indirect=True)
async def test_slow_client_closed_with_1013_fast_client_unaffected(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "streamd.http.events")
    rate, n_max, after_drop = 1000.0, 8000, 300
    target = [n_max]  # the last id the fast client waits for, known once publishing stops
    slow = await _never_reading_client(server.url)
    latencies: list[float] = []
    publish_times: list[float] = []

    async def fast() -> list[int]:
        ids: list[int] = []
        async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "/v1/events") as ws:
            ready.set()
            while not ids or ids[-1] < target[0]:
                msg = await ws.receive(timeout=20)
                assert msg.type is aiohttp.WSMsgType.TEXT
                event_id = json.loads(msg.data)["id"]
                latencies.append(time.perf_counter() - server.sent_at[event_id])
                ids.append(event_id)
        return ids

    ready = asyncio.Event()
    fast_task = asyncio.create_task(fast())
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.05)
    start_t = time.perf_counter()
    # A steady 1000 events/s of ~3 KB until the slow client's socket buffers (several MB on
    # loopback) and queue are full, then 300 more: the fast client must get every one.
    drop_at = None
    for i in range(n_max):
        await asyncio.sleep(max(0.0, start_t + i / rate - time.perf_counter()))
        t = time.perf_counter()
        server.publish(i, pad=3000)
        publish_times.append(time.perf_counter() - t)
        if drop_at is None and server.endpoint.fanout.dropped:
            drop_at = i
        if drop_at is not None and i >= drop_at + after_drop:
            break
    n = target[0] = server.bus.last_id
    fast_ids = await asyncio.wait_for(fast_task, 30)

    assert server.endpoint.fanout.dropped == 1
    assert any("1013" in r.getMessage() for r in caplog.records)
    assert fast_ids == list(range(1, n + 1))
    # The publisher never waited for the slow client, and the fast one kept normal latency.
    assert max(publish_times) < 0.1, max(publish_times)
    assert (
        statistics.median(latencies) < 0.05 and sorted(latencies)[int(0.99 * len(latencies))] < 0.5
    ), (statistics.median(latencies), max(latencies))

    got: list[int] = []

    async def drain() -> None:
        async for message in slow:
            got.append(json.loads(message)["id"])

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(drain(), 20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert got and contiguous(got) and got[-1] < n
    assert f"since={got[-1]}" in closed.value.rcvd.reason
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{server.url}/v1/events?since={got[-1]}") as ws,
    ):
        assert await receive_ids(ws, n) == list(range(got[-1] + 1, n + 1))  # it resumes with since=


async def test_shutdown_sends_what_is_queued_then_1001(server: Server) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "/v1/events") as ws:
        await asyncio.sleep(0.05)
        last = [server.publish(i)["id"] for i in range(50)][-1]
        t0 = time.perf_counter()
        stopping = asyncio.create_task(server.endpoint.shutdown(5.0))
        ids = await receive_ids(ws, last)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
        await stopping
        assert time.perf_counter() - t0 < 2.0
    assert ids == list(range(1, last + 1))
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v1/events") as r:
        assert r.status == 503
