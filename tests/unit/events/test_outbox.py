"""The store as the NATS sink's outbox: the ``sent`` marker, its migration, pruning, subjects."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.config import parse_config
from streamd.errors import ConfigError
from streamd.events.bus import EventBus
from streamd.events.nats_sink import message_id, node_name, subject_for, subject_token
from streamd.events.schema import make_event
from streamd.events.store import EventStore, open_store

STREAM = {"stream_id": "c1:caller", "call_id": "c1", "leg": "caller", "source": "sip", "labels": {}}

OLD_SCHEMA = """
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    type    TEXT NOT NULL,
    call_id TEXT,
    body    TEXT NOT NULL
);
INSERT INTO events (ts, type, call_id, body) VALUES (1.0, 'stream.started', 'c1', '{"id":1}');
"""


def test_outbox_rows_wait_until_marked_in_order(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", outbox=True)
    ids = [store.append(make_event(0, "stream.started", STREAM)) for _ in range(5)]
    rows = store.read_unsent()
    assert [r[0] for r in rows] == ids
    assert rows[0][1:3] == ("stream.started", "c1")
    assert store.mark_sent(ids[2], ids[0]) == 3
    assert [r[0] for r in store.read_unsent()] == ids[3:]
    assert store.unsent_count() == 2
    assert store.mark_sent(ids[2]) == 0  # already sent: nothing changes
    store.close()


def test_rows_written_without_a_sink_are_never_published(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    store.append(make_event(0, "stream.started", STREAM))
    store.close()
    store = EventStore(tmp_path / "e.db", outbox=True)
    new = store.append(make_event(0, "stream.started", STREAM))
    assert [r[0] for r in store.read_unsent()] == [new]
    store.close()


def test_old_store_gets_the_column_and_its_rows_stay_unpublished(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)
    store = EventStore(db, outbox=True)
    assert store.last_id() == 1 and store.read_unsent() == []
    assert store.append(make_event(0, "stream.started", STREAM)) == 2
    assert [r[0] for r in store.read_unsent()] == [2]
    store.close()


def test_prune_keeps_unsent_rows(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", outbox=True)
    a = store.append(make_event(0, "stream.started", STREAM))
    b = store.append(make_event(0, "stream.started", STREAM))
    store.mark_sent(a)
    assert store.prune(1.0, now=10**10) == 1  # everything is old; only the sent row goes
    assert [r[0] for r in store.read_unsent()] == [b]
    store.close()


def test_bus_puts_the_node_id_in_every_event(tmp_path: Path) -> None:
    cfg = parse_config(
        {"store": {"path": str(tmp_path / "e.db")}, "sinks": {"nats": {"enabled": True}}}
    )
    store = open_store(cfg)
    assert store.outbox
    bus = EventBus(store, node="node-7")
    event = bus.publish("stream.started", STREAM)
    assert event["node"] == "node-7"
    assert '"node":"node-7"' in store.read_unsent()[0][3]
    store.close()


def test_subjects_and_message_ids() -> None:
    assert (
        subject_for("streamd", "alert.raised", "a.b@c d*", "n1") == "streamd.alert.raised.a_b_c_d_"
    )
    assert subject_for("sd.eu", "daemon.status", None, "n1") == "sd.eu.daemon.status.n1"
    assert message_id("n1", 42) == "n1-42"
    assert node_name("edge-1") == "edge-1"
    assert node_name(None) and "." not in node_name(None)


@given(st.text(max_size=300))
def test_subject_token_is_always_one_valid_token(text: str) -> None:
    token = subject_token(text)
    assert 1 <= len(token) <= 128
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in token)


def test_config_rejects_bad_sink_settings() -> None:
    with pytest.raises(ConfigError, match=r"sinks\.nats\.node_id"):
        parse_config({"sinks": {"nats": {"node_id": "a.b"}}})
    with pytest.raises(ConfigError, match=r"sinks\.nats\.subject_prefix"):
        parse_config({"sinks": {"nats": {"subject_prefix": "a.>"}}})
    cfg = parse_config({"sinks": {"nats": {"enabled": True, "servers": ["nats://n1:4222"]}}})
    assert cfg.sinks.nats.replicas == 3 and cfg.sinks.nats.max_in_flight == 1
