"""The NATS JetStream sink against a real 3-node ``nats-server`` cluster on 127.0.0.1:
the stream leader killed mid-call, the whole cluster down for 20 s, the daemon killed with
SIGKILL; every stored event lands in the stream exactly once and in id order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamd.events.store import EventStore

from tests.helpers.daemonproc import DaemonProc, free_port, speech_wav, write_config
from tests.helpers.nats_cluster import (
    NATS_SERVER,
    NatsCluster,
    connect,
    retry,
    stream_messages,
    wait_jetstream,
)

pytestmark = [
    pytest.mark.skipif(
        NATS_SERVER is None, reason="nats-server not installed (scripts/setup --dev)"
    ),
]
pytest.importorskip("nats", reason="nats-py not installed (pip install 'streamd[nats]')")

STREAM = "STREAMD"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    root = tmp_path / "nats"
    root.mkdir()
    c = NatsCluster(root)
    c.start()
    try:
        asyncio.run(wait_jetstream(c.urls))
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_wav(tmp_path_factory.mktemp("speech") / "speech.wav", 16.0)


def nats_config(cluster: NatsCluster, node: str = "node-a") -> dict[str, Any]:
    return {
        "enabled": True,
        "servers": cluster.urls,
        "stream": STREAM,
        "replicas": 3,
        "node_id": node,
        "ack_timeout_s": 1.0,
    }


def readyz(d: DaemonProc) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(d.url + "/readyz", timeout=3) as r:
            body: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503 still carries the body
        body = json.loads(exc.read())
    return body


def wait_drained(d: DaemonProc, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    sink: dict[str, Any] = {}
    while time.monotonic() < deadline:
        sink = readyz(d)["sinks"]["nats"]
        if sink["state"] == "connected" and sink["backlog"] == 0:
            return sink
        time.sleep(0.2)
    raise AssertionError(f"outbox not drained within {timeout} s: {sink}\n{d.log()[-3000:]}")


def wait_windows(d: DaemonProc, n: int, timeout: float = 60) -> None:
    """Until the daemon has stored ``n`` more events than now (a call is being scored)."""
    start = readyz(d)["last_event_id"] or 0
    deadline = time.monotonic() + timeout
    while (readyz(d)["last_event_id"] or 0) < start + n:
        assert time.monotonic() < deadline, d.log()[-3000:]
        time.sleep(0.2)


def stored_ids(db: Path) -> list[int]:
    store = EventStore(db, readonly=True)
    try:
        return [e["id"] for e in store.read_since(0, limit=100_000)]
    finally:
        store.close()


def ended(db: Path) -> int:
    store = EventStore(db, readonly=True)
    try:
        return len(store.read_since(0, types=["stream.ended"]))
    finally:
        store.close()


def check_stream(cluster: NatsCluster, node: str, ids: list[int]) -> list[int]:
    """Every stored id in the stream once, in id order, with Nats-Msg-Id = node-id."""
    msgs = asyncio.run(stream_messages(cluster.urls, STREAM))
    mine = [(mid, e) for _, mid, e in msgs if e.get("node") == node]
    got = [e["id"] for _, e in mine]
    assert got == ids, f"stream has {len(got)} events of {node}, store {len(ids)}"
    assert all(mid == f"{node}-{e['id']}" for mid, e in mine)
    return got


class DurableReader:
    """A replicated durable pull consumer reading in the background (what a consumer runs)."""

    def __init__(self, cluster: NatsCluster) -> None:
        self.cluster = cluster
        self.seen: list[int] = []
        self.redelivered = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        nc = await connect(self.cluster.urls)
        try:
            js = nc.jetstream(timeout=3)
            sub = await retry(
                lambda: js.pull_subscribe(
                    "streamd.>",
                    durable="reader",
                    stream=STREAM,
                    config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, num_replicas=3),
                )
            )
            while not self.stop.is_set():
                try:
                    msgs = await sub.fetch(64, timeout=1)
                except Exception:  # timeout when idle, errors while the leader moves
                    await asyncio.sleep(0.1)
                    continue
                for m in msgs:
                    self.redelivered += m.metadata.num_delivered > 1
                    self.seen.append(json.loads(m.data)["id"])
                    with contextlib.suppress(Exception):
                        await m.ack()
        finally:
            await nc.close()


async def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


def test_stream_leader_killed_mid_call(
    cluster: NatsCluster, tiny_model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    # The stream exists first, so the durable consumer reads from the first event.
    async def make_stream() -> None:
        from nats.js.api import StreamConfig

        nc = await connect(cluster.urls)
        js = nc.jetstream(timeout=3)
        cfg = StreamConfig(name=STREAM, subjects=["streamd.>"], num_replicas=3)
        await retry(lambda: js.add_stream(cfg))
        await nc.close()

    asyncio.run(make_stream())
    port, db = free_port(), tmp_path / "e.db"
    cfg = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        db,
        port,
        sources={"files": [str(clip), str(clip)]},  # real time: two 16 s calls
        sinks={"nats": nats_config(cluster)},
    )

    async def scenario(d: DaemonProc) -> DurableReader:
        reader = DurableReader(cluster)
        reading = asyncio.create_task(reader.run())
        await asyncio.to_thread(d.wait_ready, 60)
        await asyncio.to_thread(wait_windows, d, 4)
        nc = await connect(cluster.urls)
        info = await retry(lambda: nc.jetstream(timeout=3).stream_info(STREAM))
        await nc.close()
        leader = cluster.index_of(info.cluster.leader)
        cluster.kill(leader)  # SIGKILL mid-call
        await asyncio.to_thread(wait_windows, d, 3)  # scoring goes on meanwhile
        await asyncio.sleep(2)
        cluster.start(leader)
        await _until(lambda: ended(db) >= 2, 90, "both calls ended")
        await asyncio.to_thread(wait_drained, d, 60)
        await asyncio.to_thread(d.stop)  # publishes daemon.status "stopped" on its way out
        n = len(stored_ids(db))
        await _until(lambda: len(reader.seen) >= n, 30, f"reader saw {len(reader.seen)} of {n}")
        await asyncio.sleep(1)  # anything delivered twice would show up now
        reader.stop.set()
        await reading
        return reader

    with DaemonProc(cfg, port) as d:
        d.start(wait_ready=False)
        reader = asyncio.run(scenario(d))
        assert d.proc is not None and d.proc.returncode == 0, d.log()[-3000:]
    ids = stored_ids(db)
    assert sum(1 for _ in ids) > 20
    check_stream(cluster, "node-a", ids)
    # The durable consumer saw every event exactly once, in order.
    assert reader.seen == ids, (len(reader.seen), len(ids), reader.redelivered)

    # Replay from a sequence returns the rest.
    async def replay(start: int) -> list[int]:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        nc = await connect(cluster.urls)
        js = nc.jetstream(timeout=3)
        sub = await retry(
            lambda: js.pull_subscribe(
                "streamd.>",
                durable="replay",
                stream=STREAM,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=start,
                    num_replicas=3,
                ),
            )
        )
        out: list[int] = []
        for _ in range(50):
            try:
                msgs = await sub.fetch(100, timeout=1)
            except Exception:
                break
            for m in msgs:
                out.append(json.loads(m.data)["id"])
                await m.ack()
        await nc.close()
        return out

    half = len(ids) // 2
    assert asyncio.run(replay(half + 1)) == ids[half:]


def test_cluster_down_20s_then_daemon_killed_and_backlog_drains_once(
    cluster: NatsCluster, tiny_model_dir: Path, clip: Path, tmp_path: Path
) -> None:
    port, db = free_port(), tmp_path / "e.db"
    cfg = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        db,
        port,
        sources={"files": [str(clip)]},
        sinks={"nats": nats_config(cluster)},
    )
    with DaemonProc(cfg, port).start() as d:
        wait_windows(d, 3)
        wait_drained(d, 30)
        cluster.stop()  # the whole cluster down mid-call
        down_at = readyz(d)["last_event_id"]
        time.sleep(20)
        body = readyz(d)
        sink = body["sinks"]["nats"]
        assert body["ready"], body  # calls keep flowing: NATS is not a readiness reason
        assert sink["state"] != "connected" and sink["backlog"] > 0, sink
        assert body["last_event_id"] > down_at + 5  # scoring went on for 20 s
        # kill -9 the daemon with the backlog still unsent, start it again, then the cluster.
        d.signal(signal.SIGKILL)
        d.wait(10)
        backlog = sink["backlog"]
    with DaemonProc(cfg, port).start() as d:
        assert readyz(d)["sinks"]["nats"]["backlog"] >= backlog
        cluster.start()
        wait_drained(d, 60)
        d.stop()
    check_stream(cluster, "node-a", stored_ids(db))


def test_rows_acked_but_not_marked_before_a_crash_are_published_once(
    cluster: NatsCluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The crash window between JetStream's ack and the ``sent`` mark: the row goes out again
    with the same Nats-Msg-Id and JetStream drops the copy."""
    port, db = free_port(), tmp_path / "e.db"
    cfg = write_config(
        tmp_path / "c.yaml", tiny_model_dir, db, port, sinks={"nats": nats_config(cluster)}
    )
    with DaemonProc(cfg, port).start() as d:
        wait_drained(d, 30)
        d.signal(signal.SIGKILL)
        d.wait(10)
    ids = stored_ids(db)
    check_stream(cluster, "node-a", ids)
    import sqlite3

    with sqlite3.connect(db) as conn:  # the state a kill -9 between ack and mark leaves
        conn.execute("UPDATE events SET sent = 0")
    with DaemonProc(cfg, port).start() as d:
        sink = wait_drained(d, 30)
        assert sink["duplicates"] >= len(ids), sink
        d.stop()
    check_stream(cluster, "node-a", stored_ids(db))
