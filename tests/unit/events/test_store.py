"""The SQLite event log: ids, reads, pruning, one writer, crash durability, and the bus on top."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamd.config import parse_config
from streamd.events.bus import EventBus
from streamd.events.schema import make_event, validate_event
from streamd.events.store import EventStore, StoreError, default_store_path, open_store

STREAM = {"stream_id": "c1:caller", "call_id": "c1", "leg": "caller", "source": "sip", "labels": {}}


def window_event(call_id: str = "c1", score: float = 0.5) -> dict[str, object]:
    stream = dict(STREAM, call_id=call_id, stream_id=f"{call_id}:caller")
    return make_event(
        0,
        "window.scored",
        stream,
        score=score,
        smoothed=score,
        window={"start_s": 0.0, "end_s": 4.0},
        model={"name": "m", "sha256": ""},
    )


def test_append_assigns_ids_and_reads_back_filtered(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    ids = [
        store.append(window_event("a")),
        store.append(make_event(0, "stream.started", STREAM)),
        store.append(window_event("b", 0.9)),
    ]
    assert ids == [1, 2, 3] and store.last_id() == 3
    events = store.read_since(0)
    assert [e["id"] for e in events] == ids
    for e in events:
        validate_event(e)
    assert events[2]["score"] == 0.9 and events[2]["stream"]["call_id"] == "b"
    assert [e["id"] for e in store.read_since(1)] == [2, 3]
    assert [e["id"] for e in store.read_since(0, types=["window.scored"])] == [1, 3]
    assert [e["id"] for e in store.read_since(0, call_id="b")] == [3]
    assert [e["id"] for e in store.read_since(0, limit=2)] == [1, 2]
    assert [i for i, _ in store.read_raw(0, upto=2)] == [1, 2]
    assert store._writer is not None
    assert store._writer.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_ids_grow_across_restarts_and_are_never_reused_after_prune(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = EventStore(path)
    for _ in range(5):
        store.append(window_event())
    assert store.prune(1.0, now=time.time() + 2 * 86400) == 5
    assert store.count() == 0 and store.last_id() == 5
    store.close()
    store = EventStore(path)
    assert store.last_id() == 5
    assert store.append(window_event()) == 6
    store.close()


def test_prune_keeps_recent_events_and_works_in_chunks(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    for _ in range(3):
        store.append(window_event())
    time.sleep(0.01)
    mid = time.time()
    time.sleep(0.01)
    for _ in range(2):
        store.append(window_event())
    assert store.prune(1.0, now=time.time()) == 0
    assert store.prune(1.0, now=mid + 86400) == 3
    assert [e["id"] for e in store.read_since(0)] == [4, 5]
    for _ in range(4500):
        store.append(window_event())
    later = time.time() + 2 * 86400
    assert store.prune(1.0, now=later, max_rows=2000) == 2000
    assert store.prune(1.0, now=later) == 2502 and store.count() == 0
    store.close()


def test_one_writer_per_store_and_read_only_access(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = EventStore(path)
    store.append(window_event())
    with pytest.raises(StoreError, match="in use by another streamd"):
        EventStore(path)
    store.wait_written(1)  # another reader sees what the writer thread committed
    reader = EventStore(path, readonly=True)
    assert [e["id"] for e in reader.read_since(0)] == [1] and reader.last_id() == 1
    with pytest.raises(StoreError, match="read-only"):
        reader.append(window_event())
    reader.close()
    store.close()
    EventStore(path).close()  # the lock went with the first writer
    with pytest.raises(StoreError, match="does not exist"):
        EventStore(tmp_path / "nope.db", readonly=True)


def test_default_path_follows_systemd_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_store_path({"STATE_DIRECTORY": "/var/lib/streamd:/var/lib/other"}) == Path(
        "/var/lib/streamd/events.db"
    )
    assert default_store_path({}) == Path("streamd-events.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    store = open_store(parse_config({}, environ={}))
    assert store.path == tmp_path / "state" / "events.db" and store.path.exists()
    store.close()
    store = open_store(parse_config({"store": {"path": str(tmp_path / "x" / "y.db")}}, environ={}))
    assert store.path.exists()
    store.close()
    (tmp_path / "afile").write_text("")
    with pytest.raises(StoreError, match=r"store\.path"):
        EventStore(tmp_path / "afile" / "e.db")


CRASH_WRITER = """
import sys
from streamd.events.store import EventStore
from streamd.events.schema import make_event
store = EventStore(sys.argv[1])
s = {"stream_id": "c:x", "call_id": "c", "leg": "x", "source": "t", "labels": {}}
while True:
    i = store.append(make_event(0, "stream.started", s))
    print(i, store._writer.written_upto, flush=True)
"""


def test_written_appends_survive_kill_9_and_no_id_is_handed_out_twice(tmp_path: Path) -> None:
    """Every id the writer confirmed is there after SIGKILL, and the next run starts past every
    id handed out, written or not (a client resuming with since= must never skip an event)."""
    path = tmp_path / "e.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    handed, written = [], 0
    for line in proc.stdout:
        i, w = map(int, line.split())
        handed.append(i)
        written = max(written, w)
        if len(handed) >= 3000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = EventStore(path)
    stored = {e["id"] for e in store.read_since(0, limit=10**6)}
    assert set(range(1, written + 1)) <= stored
    assert store.append(make_event(0, "daemon.status", None)) > max(handed)
    store.close()


def test_bus_uses_store_ids_and_survives_a_failing_store(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    store.append(window_event())
    bus = EventBus(store)
    seen: list[dict[str, object]] = []
    bus.add_sink(seen.append)
    assert bus.publish("stream.started", STREAM)["id"] == 2
    assert store._writer is not None
    store.wait_written(2)
    store._writer.conn.execute("PRAGMA query_only=1")  # a real write failure: SQLITE_READONLY
    failed = bus.publish(
        "window.scored", STREAM, score=0.7, window={"start_s": 0, "end_s": 4}, model={"name": "m"}
    )
    store.wait_written(3)
    store._writer.conn.execute("PRAGMA query_only=0")
    after = bus.publish("stream.ended", STREAM, summary={})
    assert store.write_errors == 1
    assert [e["id"] for e in seen] == [2, 3, 4] and failed["id"] == 3 and after["id"] == 4
    assert [e["id"] for e in store.read_since(0)] == [1, 2, 4]  # id 3 went live only, and is burned
    store.close()
    store = EventStore(tmp_path / "e.db")  # a clean close gives unused reserved ids back
    assert store.append(window_event()) == 5
    store.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(["append", "prune", "reopen"]), min_size=1, max_size=30))
def test_ids_strictly_increase_whatever_happens(tmp_path: Path, ops: list[str]) -> None:
    path = tmp_path / f"h{time.monotonic_ns()}.db"
    store = EventStore(path)
    handed_out: list[int] = []
    for op in ops:
        if op == "append":
            handed_out.append(store.append(window_event()))
        elif op == "prune":
            store.prune(1.0, now=time.time() + 2 * 86400)
        else:
            store.close()
            store = EventStore(path)
    assert handed_out == sorted(set(handed_out))
    assert store.last_id() == (handed_out[-1] if handed_out else 0)
    stored = [e["id"] for e in store.read_since(0, limit=100)]
    assert set(stored) <= set(handed_out)
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
