"""The event log under trouble, with a real in-process daemon: a store locked by another
process, a store left with open streams by a crash, a client asking for ids that never were."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamd.app.daemon import Daemon
from streamd.config import parse_config
from streamd.events.schema import make_event
from streamd.events.store import EventStore

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def config(tmp_path: Path, model_dir: Path, **sources: Any) -> Any:
    return parse_config(
        {
            "server": {"port": 0},
            "sources": {"webrtc": {"enabled": False}, **sources},
            "model": {"dir": str(model_dir), "name": "tiny", "batch_wait_ms": 20},
            "store": {"path": str(tmp_path / "e.db")},
        },
        environ={},
    )


@pytest.mark.slow
async def test_a_locked_store_delays_neither_health_nor_live_events(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    daemon = Daemon(config(tmp_path, tiny_model_dir))
    await daemon.start()
    holder = None
    try:
        assert daemon.server is not None and daemon.bus is not None and daemon.store is not None
        live: list[dict[str, Any]] = []
        daemon.bus.add_sink(live.append)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(daemon.store.path), "4"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        stream = {"stream_id": "c:x", "call_id": "c", "leg": "x", "source": "t", "labels": {}}
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            ids = [daemon.bus.publish("stream.started", stream)["id"] for _ in range(5)]
            slowest = 0.0
            for _ in range(10):  # health answers while another process holds the write lock
                t = time.monotonic()
                async with s.get(daemon.server.url + "/healthz") as r:
                    assert r.status == 200
                slowest = max(slowest, time.monotonic() - t)
                await asyncio.sleep(0.1)
            assert slowest < 1.0, f"/healthz took {slowest:.2f} s while the store was locked"
            assert [e["id"] for e in live if e["id"] in ids] == ids  # live, in order, not stuck
            assert time.monotonic() - t0 < 3.5  # well before the lock went away
        holder.wait(10)
        assert daemon.store.wait_written(ids[-1], 15)
        stored = {e["id"] for e in daemon.store.read_since(0, limit=1000)}
        assert set(ids) <= stored  # stored once the lock was released (busy_timeout retries)
        assert daemon.bus.sent_before_stored >= 1
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        await daemon.stop()


async def test_streams_left_open_by_a_crash_end_as_recovered(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    store = EventStore(tmp_path / "e.db")
    s1 = {"stream_id": "a:caller", "call_id": "a", "leg": "caller", "source": "sip", "labels": {}}
    s2 = dict(s1, stream_id="b:caller", call_id="b")
    store.append(make_event(0, "stream.started", s2))  # an older run that ended it
    store.append(make_event(0, "stream.ended", s2, summary={"reason": "bye"}))
    store.append(make_event(0, "daemon.status", None, state="ready"))
    for s in (s1, s2):
        store.append(make_event(0, "stream.started", s))
    store.append(make_event(0, "stream.ended", s1, summary={"reason": "bye"}))
    store.close()  # the run died with b:caller open
    daemon = Daemon(config(tmp_path, tiny_model_dir))
    await daemon.start()
    try:
        assert daemon.store is not None
        events = daemon.store.read_since(6)
        ended = [e for e in events if e["type"] == "stream.ended"]
        assert [(e["stream"]["stream_id"], e["summary"]["reason"]) for e in ended] == [
            ("b:caller", "recovered")
        ]
        assert events[-1]["type"] == "daemon.status"  # recovered before the new run's ready
    finally:
        await daemon.stop()
    daemon = Daemon(config(tmp_path, tiny_model_dir))  # a clean stop leaves nothing to recover
    await daemon.start()
    try:
        assert daemon.store is not None
        ended_again = [
            e for e in daemon.store.read_since(6, limit=100) if e["type"] == "stream.ended"
        ]
        assert len(ended_again) == 1
    finally:
        await daemon.stop()


async def test_since_beyond_the_last_id_is_closed_with_a_reason(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    daemon = Daemon(config(tmp_path, tiny_model_dir))
    await daemon.start()
    try:
        assert daemon.server is not None and daemon.bus is not None
        last = daemon.bus.last_id
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(daemon.server.url + f"/v1/events?since={last + 100}") as ws,
        ):
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
            assert f"beyond the last event id {last}" in str(msg.extra)
    finally:
        await daemon.stop()


def test_a_corrupted_store_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = EventStore(path)
    for _ in range(300):
        store.append(make_event(0, "daemon.status", None, state="ready"))
    store.close()
    data = bytearray(path.read_bytes())
    for page in range(4096, len(data), 4096):  # damage every b-tree page header, keep page 1
        data[page : page + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"store\.path: .*(corrupted|not a usable SQLite)"):
        EventStore(path)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception, match=r"not a usable SQLite database"):
        EventStore(path)


def test_ids_never_repeat_after_failed_writes_and_kill_9(tmp_path: Path) -> None:
    """The reproduced bug: writes fail (a full disk), the daemon is killed, it restarts."""
    script = """
import sys, time
from streamd.events.store import EventStore
from streamd.events.schema import make_event
store = EventStore(sys.argv[1])
for _ in range(20):
    store.append(make_event(0, "daemon.status", None, state="ready"))
store.wait_written(20)
store._writer.conn.execute("PRAGMA query_only=1")  # every write now fails
for _ in range(21):
    print(store.append(make_event(0, "daemon.status", None, state="ready")), flush=True)
store.wait_written(41)
print("done", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "e.db")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    handed = []
    for line in proc.stdout:
        if line.strip() == "done":
            break
        handed.append(int(line))
    proc.kill()
    proc.wait(10)
    assert handed == list(range(21, 42))
    store = EventStore(tmp_path / "e.db")
    assert [e["id"] for e in store.read_since(0)][-1] == 20  # the failed ones are not stored
    assert store.append(make_event(0, "daemon.status", None, state="ready")) > 41
    store.close()
    with sqlite3.connect(tmp_path / "e.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 21
