"""``streamd bench events``: events/s that the store + websocket fan-out sustain, and the latency
from publish (a window scored) to the event received by a websocket client.

The server side is the daemon's own: SQLite store, bus, ``/v1/events`` endpoint on loopback. The
subscribers run in a child process (one event loop for all of them), so client parsing does not
share the server's core. Two phases per subscriber count:
  throughput  publish N events as fast as the loop allows; rate = N / (last receipt - first publish)
  latency     publish at a steady rate; each event carries its publish time (CLOCK_MONOTONIC,
              the same clock in both processes); p50/p99 over every receipt at every client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STREAM = {
    "stream_id": "",
    "call_id": "",
    "leg": "caller",
    "source": "sip",
    "labels": {"from": "sip:+15550100@pbx", "to": "sip:support@pbx"},
}
MODEL = {"name": "aasist-l", "sha256": "6f1c" * 16}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "events",
        help="store + websocket fan-out: events/s and publish-to-client latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--subscribers", default="1,50", help="subscriber counts to measure (default 1,50)"
    )
    p.add_argument(
        "--events", type=int, default=20000, help="events in the throughput phase (default 20000)"
    )
    p.add_argument(
        "--rate", type=float, default=100.0, help="events/s in the latency phase (default 100)"
    )
    p.add_argument(
        "--latency-events",
        type=int,
        default=1000,
        help="events in the latency phase (default 1000)",
    )
    p.add_argument(
        "--max-seconds", type=float, default=120.0, help="give up on a phase after this long"
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def measure_appends(n: int = 5000) -> dict[str, float]:
    """Per-append time of the store alone (what each publish costs the event loop)."""
    from streamd.events.schema import make_event
    from streamd.events.store import EventStore

    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "bench.db")
        times = []
        for i in range(n):
            event = make_event(
                0,
                "window.scored",
                STREAM,
                score=0.5,
                window={"start_s": i, "end_s": i + 4},
                model=MODEL,
            )
            t = time.perf_counter()
            store.append(event)
            times.append(time.perf_counter() - t)
        store.close()
    return {
        "append_p50_us": 1e6 * _pct(times, 0.5),
        "append_p99_us": 1e6 * _pct(times, 0.99),
        "appends_per_s": n / sum(times),
    }


class _Server:
    def __init__(self, tmp: Path, queue: int) -> None:
        from streamd.events.bus import EventBus
        from streamd.events.store import EventStore

        self.store = EventStore(tmp / "bench.db")
        self.bus = EventBus(self.store)
        self.queue = queue
        self.url = ""

    async def start(self) -> None:
        from aiohttp import web

        from streamd.http.events_ws import EventsEndpoint

        self.endpoint = EventsEndpoint(self.bus, self.store, [], self.queue)
        app = web.Application()
        app.router.add_get("/v1/events", self.endpoint.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"ws://127.0.0.1:{self.runner.addresses[0][1]}/v1/events"

    def publish(self, i: int) -> None:
        stream = dict(STREAM, stream_id=f"call-{i % 200}:caller", call_id=f"call-{i % 200}")
        self.bus.publish(
            "window.scored",
            stream,
            score=0.5,
            smoothed=0.5,
            alerting=False,
            window={"start_s": float(i), "end_s": i + 4.0},
            model=MODEL,
            latency_ms=12.5,
            batch=8,
            bench_t0=time.monotonic(),
        )

    async def stop(self) -> None:
        await self.endpoint.shutdown(2.0)
        await self.runner.cleanup()
        self.store.close()


async def _readline(proc: asyncio.subprocess.Process, timeout: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError("bench client exited early")
    return line.decode().strip()


async def measure(
    subscribers: int, n: int, rate: float, n_lat: int, max_s: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = _Server(Path(tmp), queue=n + n_lat + 10)
        await server.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamd.bench.events",
            "client",
            server.url,
            str(subscribers),
            str(n),
            str(n_lat),
            str(max_s),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert await _readline(proc, 30) == "ready"
            t0, cpu0 = time.monotonic(), time.process_time()
            for i in range(n):
                server.publish(i)
                if i % 64 == 63:
                    await asyncio.sleep(0)
                if time.monotonic() - t0 > max_s:
                    break
            t_pub = time.monotonic() - t0
            phase1 = json.loads(await _readline(proc, max_s + 30))
            cpu = time.process_time() - cpu0
            t_fan = phase1["t_last"] - t0
            period = 1.0 / rate
            start = time.monotonic()
            for i in range(n_lat):
                delay = start + i * period - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                server.publish(n + i)
            phase2 = json.loads(await _readline(proc, max_s + 30))
        finally:
            await server.stop()
            await asyncio.wait_for(proc.wait(), 30)
    return {
        "subscribers": subscribers,
        "events": n,
        "publish_events_per_s": n / t_pub,
        "fanout_events_per_s": phase1["received"] / subscribers / t_fan,
        "deliveries_per_s": phase1["received"] / t_fan,
        "complete": phase1["received"] == n * subscribers,
        "server_cpu_us_per_message": 1e6 * cpu / max(1, phase1["received"]),
        "latency_rate": rate,
        "latency_p50_ms": phase2["p50_ms"],
        "latency_p99_ms": phase2["p99_ms"],
        "latency_max_ms": phase2["max_ms"],
        "dropped_1013": server.endpoint.fanout.dropped,
    }


async def _client(url: str, subscribers: int, n: int, n_lat: int, max_s: float) -> None:
    """Child process: ``subscribers`` websocket clients; prints one JSON line per phase."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(url, max_msg_size=0) for _ in range(subscribers)]
        print("ready", flush=True)
        last = [0.0]

        async def take(
            ws: aiohttp.ClientWebSocketResponse, count: int, lat: list[float] | None
        ) -> int:
            got = 0
            deadline = time.monotonic() + max_s
            while got < count and time.monotonic() < deadline:
                msg = await ws.receive(timeout=max_s)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                now = time.monotonic()
                got += 1
                last[0] = max(last[0], now)
                if lat is not None:
                    lat.append(now - json.loads(msg.data)["bench_t0"])
            return got

        counts = await asyncio.gather(*(take(ws, n, None) for ws in sockets))
        print(json.dumps({"received": sum(counts), "t_last": last[0]}), flush=True)
        lat: list[float] = []
        await asyncio.gather(*(take(ws, n_lat, lat) for ws in sockets))
        ms = [1000 * x for x in lat]
        print(
            json.dumps(
                {
                    "p50_ms": _pct(ms, 0.5),
                    "p99_ms": _pct(ms, 0.99),
                    "max_ms": max(ms, default=float("nan")),
                }
            ),
            flush=True,
        )
        for ws in sockets:
            await ws.close()


def run(args: argparse.Namespace) -> int:
    from streamd.bench.scorer import machine

    counts = [int(x) for x in args.subscribers.split(",")]
    appends = measure_appends()
    results = [
        asyncio.run(measure(c, args.events, args.rate, args.latency_events, args.max_seconds))
        for c in counts
    ]
    if args.json:
        print(json.dumps({"machine": machine(), "store": appends, "runs": results}))
        return 0
    print(f"machine: {machine()}")
    print(
        f"store append alone: p50 {appends['append_p50_us']:.1f} us, p99 "
        f"{appends['append_p99_us']:.1f} us, {appends['appends_per_s']:.0f} appends/s"
    )
    for r in results:
        print(
            f"{r['subscribers']:>3} subscribers: publish (store + enqueue) "
            f"{r['publish_events_per_s']:8.0f} events/s, delivered to every subscriber "
            f"{r['fanout_events_per_s']:8.0f} events/s ({r['deliveries_per_s']:.0f} "
            f"messages/s, server CPU {r['server_cpu_us_per_message']:.1f} "
            f"us/message{'' if r['complete'] else ', INCOMPLETE'}); latency at "
            f"{r['latency_rate']:.0f} events/s: p50 {r['latency_p50_ms']:.2f} ms, p99 "
            f"{r['latency_p99_ms']:.2f} ms, max {r['latency_max_ms']:.2f} ms"
        )
    return 0


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "client":
    _, _, _url, _subs, _n, _nl, _max = sys.argv
    asyncio.run(_client(_url, int(_subs), int(_n), int(_nl), float(_max)))
elif __name__ == "__main__":
    print(
        "usage: streamd bench events (running this module directly is for its child process)",
        file=sys.stderr,
    )
    raise SystemExit(2)
