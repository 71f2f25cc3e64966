"""``streamd bench nats``: the NATS JetStream sink against a running cluster (docs/scale-out.md).

Everything on the daemon's side is the daemon's own code: SQLite store as outbox, event bus,
``NatsOutbox``. Each phase uses a fresh stream (deleted afterwards) with ``--replicas``.
  catch-up   N events already in the outbox (the cluster was down); time until all are acked,
             for each ``--in-flight`` value: the outbox drain rate = events/s into the stream
  latency    events published on the bus at a steady rate; a replicated durable pull consumer in
             this process reads them; bus publish -> consumer receipt, p50/p99 (one clock)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from streamd.config.sections import NatsSinkConfig
from streamd.events.bus import EventBus
from streamd.events.nats_sink import NatsOutbox
from streamd.events.store import EventStore

STREAM = {
    "stream_id": "c:caller",
    "call_id": "c",
    "leg": "caller",
    "source": "sip",
    "labels": {"from": "sip:+15550100@pbx", "to": "sip:support@pbx"},
}
FIELDS = {
    "score": 0.123456,
    "smoothed": 0.2,
    "window": {"start_s": 1.0, "end_s": 5.0},
    "model": {"name": "aasist-l", "sha256": "6f1c" * 16},
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "nats",
        help="NATS sink: outbox drain rate into a replicated stream, publish-to-consumer latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--servers", required=True, help="comma-separated nats:// URLs")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--events", type=int, default=5000, help="catch-up backlog (default 5000)")
    p.add_argument("--in-flight", default="1,16,64", help="max_in_flight values (default 1,16,64)")
    p.add_argument("--rate", type=float, default=200.0, help="latency phase events/s (default 200)")
    p.add_argument("--latency-events", type=int, default=1000)
    p.add_argument("--max-seconds", type=float, default=120.0, help="bound on each phase")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _cfg(servers: list[str], stream: str, replicas: int, in_flight: int) -> NatsSinkConfig:
    return NatsSinkConfig(
        enabled=True,
        servers=servers,
        stream=stream,
        subject_prefix=stream.lower(),
        replicas=replicas,
        node_id="bench",
        max_in_flight=in_flight,
    )


async def _drop_stream(servers: list[str], stream: str) -> None:
    import nats

    nc = await nats.connect(servers=servers, connect_timeout=2)
    try:
        await nc.jetstream(timeout=5).delete_stream(stream)
    except Exception:  # already gone, or never made
        pass
    finally:
        await nc.close()


async def catch_up(args: argparse.Namespace, servers: list[str], in_flight: int) -> dict[str, Any]:
    stream = f"BENCH_CATCHUP_{in_flight}"
    await _drop_stream(servers, stream)
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "e.db", outbox=True)
        bus = EventBus(store, node="bench")
        for _ in range(args.events):
            bus.publish("window.scored", STREAM, **FIELDS)
        await asyncio.to_thread(store.wait_written, store.last_id(), 60)
        outbox = NatsOutbox(_cfg(servers, stream, args.replicas, in_flight), store, "bench")
        await outbox.start()
        t0 = time.perf_counter()
        deadline = t0 + args.max_seconds
        first: float | None = None
        while outbox.published < args.events and time.perf_counter() < deadline:
            if first is None and outbox.published:
                first = time.perf_counter()
            await asyncio.sleep(0.01)
        t1 = time.perf_counter()
        done = outbox.published
        await outbox.stop(0)
        store.close()
    await _drop_stream(servers, stream)
    start = first or t0  # from the first ack: connect and stream creation are not the rate
    return {
        "in_flight": in_flight,
        "events": done,
        "events_per_s": round(done / max(t1 - start, 1e-9), 1),
        "reordered": outbox.reordered,
    }


async def latency(args: argparse.Namespace, servers: list[str]) -> dict[str, Any]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    stream = "BENCH_LATENCY"
    await _drop_stream(servers, stream)
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "e.db", outbox=True)
        bus = EventBus(store, node="bench")
        outbox = NatsOutbox(_cfg(servers, stream, args.replicas, 1), store, "bench")
        await outbox.start()
        bus.add_sink(outbox.notify)
        bus.publish("daemon.status", None, state="ready")  # creates the stream
        deadline = time.perf_counter() + args.max_seconds
        while outbox.published < 1 and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        nc = await nats.connect(servers=servers, connect_timeout=2)
        js = nc.jetstream(timeout=5)
        sub = await js.pull_subscribe(
            f"{stream.lower()}.window.scored.>",
            durable="bench",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, num_replicas=args.replicas),
        )

        async def consume() -> None:
            while len(got) < args.latency_events and time.perf_counter() < deadline:
                try:
                    msgs = await sub.fetch(100, timeout=0.5)
                except Exception:  # idle fetch timeout
                    continue
                now = time.perf_counter()
                for m in msgs:
                    got[json.loads(m.data)["id"]] = now

        reader = asyncio.create_task(consume())
        gap = 1.0 / args.rate
        t_next = time.perf_counter()
        for _ in range(args.latency_events):
            t_next += gap
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
            ev = bus.publish("window.scored", STREAM, **FIELDS)
            sent[ev["id"]] = time.perf_counter()
        await reader
        await nc.close()
        await outbox.stop(2)
        store.close()
    await _drop_stream(servers, stream)
    lat = sorted((got[i] - sent[i]) * 1e3 for i in got if i in sent)
    if not lat:
        return {"received": 0}
    return {
        "rate": args.rate,
        "received": len(lat),
        "p50_ms": round(lat[len(lat) // 2], 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "max_ms": round(lat[-1], 2),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    out: dict[str, Any] = {"replicas": args.replicas, "catch_up": []}
    for n in [int(x) for x in args.in_flight.split(",")]:
        out["catch_up"].append(await catch_up(args, servers, n))
    out["latency"] = await latency(args, servers)
    return out


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_main(args))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"JetStream R{result['replicas']} stream, one streamd node, SQLite outbox:")
    for row in result["catch_up"]:
        print(
            f"  catch-up max_in_flight={row['in_flight']:>3}: {row['events_per_s']:>8.0f} events/s "
            f"({row['events']} events, {row['reordered']} reordered)"
        )
    lat = result["latency"]
    if lat.get("received"):
        print(
            f"  bus publish -> durable consumer at {lat['rate']:.0f} events/s: "
            f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms "
            f"({lat['received']} events)"
        )
    else:
        print("  latency: no event reached the consumer")
    return 0
