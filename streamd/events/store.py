"""The durable event log: SQLite in WAL mode, written before any event is sent anywhere.

Ids come from ``AUTOINCREMENT``: SQLite keeps the high-water mark in ``sqlite_sequence``, so ids
grow across restarts and are never reused after pruning. One writer connection lives on the event
loop thread (an append is one small autocommitted INSERT, tens of microseconds); reads for replay
and WAL checkpoints use a second connection from worker threads, so neither a long replay nor an
fsync ever stalls the loop.

The store is also the outbox of the NATS sink (events/nats_sink.py): with ``outbox`` on, rows are
written with ``sent = 0`` and marked ``sent = 1`` once JetStream acknowledged them; rows written
while no sink was configured (and rows from stores made before the column existed) have
``sent IS NULL`` and are never published. Pruning keeps unsent rows.

Durability: ``synchronous=NORMAL`` in WAL mode means a committed event survives a crash or
``kill -9`` of the daemon (it is in the OS page cache); only a power loss or kernel crash can lose
the last events since the previous checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from streamd.errors import StreamdError

if TYPE_CHECKING:
    from streamd.config import Config

log = logging.getLogger("streamd.store")

DEFAULT_FILE = "streamd-events.db"
PRUNE_CHUNK = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    type    TEXT NOT NULL,
    call_id TEXT,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_call ON events (call_id, id);
"""
# Added after the first release: stores made before it get the column on open (rows stay NULL).
_OUTBOX = """
CREATE INDEX IF NOT EXISTS events_unsent ON events (id) WHERE sent = 0;
"""


class StoreError(StreamdError):
    """The event store cannot be opened or used."""


def default_store_path(environ: dict[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY/events.db`` under systemd (StateDirectory=), else ./streamd-events.db."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "")
    if state:
        # systemd joins several StateDirectory= entries with ':'; the first is ours.
        return Path(state.split(":")[0]) / "events.db"
    return Path(DEFAULT_FILE)


class EventStore:
    def __init__(self, path: str | Path, readonly: bool = False, outbox: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.outbox = outbox  # new rows wait for the NATS sink (sent = 0)
        self._lock_file: IO[str] | None = None
        self._read_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._last = 0
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"store.path: cannot create {self.path.parent} ({exc.strerror})"
                ) from None
            self._take_lock()
            self._writer = self._connect()
            mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "store %s: journal_mode is %s, not wal (filesystem without shared memory?)",
                    self.path,
                    mode,
                )
            # Checkpoints (and their fsync) run from a worker thread via checkpoint(), not on append.
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            self._writer.executescript(_SCHEMA)
            self._migrate(self._writer)
            self._last = self._high_water(self._writer)
        elif not self.path.exists():
            raise StoreError(f"store.path: {self.path} does not exist")
        self._reader = self._connect()
        self.appended = 0

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread off: open_store runs in a worker thread, appends then come from the loop.
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"store.path: cannot open {self.path} ({exc})") from None
        return conn

    def _take_lock(self) -> None:
        """One writer per store: a second daemon on the same file would hand out the same ids."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            f = open(lock_path, "a+")  # noqa: SIM115 - held open for the store's lifetime
        except OSError as exc:
            raise StoreError(f"store.path: cannot create {lock_path} ({exc.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise StoreError(
                f"store.path: {self.path} is in use by another streamd process"
            ) from None
        self._lock_file = f

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        if "sent" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN sent INTEGER")
            log.info("store: added the outbox column (existing events are not published)")
        conn.executescript(_OUTBOX)

    @staticmethod
    def _high_water(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def append(self, event: dict[str, Any]) -> int:
        """Store one event under the next id, set ``event["id"]`` and return it.

        The id is taken before the INSERT, so one that fails is burned, never handed out twice.
        """
        if self._writer is None:
            raise StoreError("the event store is read-only or closed")
        self._last += 1
        event["id"] = self._last
        stream = event.get("stream")
        call_id = stream.get("call_id") if isinstance(stream, dict) else None
        body = json.dumps(event, separators=(",", ":"))
        self._writer.execute(
            "INSERT INTO events (id, ts, type, call_id, body, sent) VALUES (?, ?, ?, ?, ?, ?)",
            (self._last, time.time(), event["type"], call_id, body, 0 if self.outbox else None),
        )
        self.appended += 1
        return self._last

    def last_id(self) -> int:
        """The highest id ever handed out (kept even when those events were pruned)."""
        if self._writer is not None:
            return self._last
        with self._read_lock:
            return self._high_water(self._reader)

    def read_raw(
        self,
        after_id: int,
        types: Iterable[str] | None = None,
        call_id: str | None = None,
        limit: int = 1000,
        upto: int | None = None,
    ) -> list[tuple[int, str]]:
        """``(id, json text)`` of stored events with ``after_id < id [<= upto]``, oldest first.

        Thread-safe: replay calls it from worker threads and sends the text as stored.
        """
        sql = ["SELECT id, body FROM events WHERE id > ?"]
        args: list[Any] = [int(after_id)]
        if upto is not None:
            sql.append("AND id <= ?")
            args.append(int(upto))
        wanted = sorted(set(types)) if types else []
        if wanted:
            sql.append(f"AND type IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if call_id is not None:
            sql.append("AND call_id = ?")
            args.append(call_id)
        sql.append("ORDER BY id LIMIT ?")
        args.append(int(limit))
        with self._read_lock:
            return [(int(i), str(b)) for i, b in self._reader.execute(" ".join(sql), args)]

    def read_since(
        self,
        after_id: int,
        types: Iterable[str] | None = None,
        call_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.read_raw(after_id, types, call_id, limit)]

    def read_unsent(
        self, after_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, str, str | None, str]]:
        """``(id, type, call_id, json text)`` of outbox rows not yet acknowledged, oldest first."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT id, type, call_id, body FROM events WHERE sent = 0 AND id > ? "
                "ORDER BY id LIMIT ?",
                (int(after_id), int(limit)),
            ).fetchall()
        return [(int(i), str(t), None if c is None else str(c), str(b)) for i, t, c, b in rows]

    def mark_sent(self, upto_id: int, from_id: int = 0) -> int:
        """Mark outbox rows ``from_id <= id <= upto_id`` sent; return how many changed."""
        if self._writer is None:
            raise StoreError("the event store is read-only or closed")
        cur = self._writer.execute(
            "UPDATE events SET sent = 1 WHERE sent = 0 AND id >= ? AND id <= ?",
            (int(from_id), int(upto_id)),
        )
        return int(cur.rowcount)

    def unsent_count(self) -> int:
        with self._read_lock:
            return int(
                self._reader.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0]
            )

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT count(*) FROM events").fetchone()[0])

    def prune(
        self, retention_days: float, now: float | None = None, max_rows: int | None = None
    ) -> int:
        """Delete events older than ``retention_days``, in chunks; return how many went.

        The daemon passes ``max_rows`` and yields between calls, so a big backlog never holds the
        write lock (or the loop) for long. ``sqlite_sequence`` keeps the high-water mark.
        """
        if self._writer is None:
            raise StoreError("the event store is read-only or closed")
        cutoff = (time.time() if now is None else now) - retention_days * 86400.0
        deleted = 0
        while max_rows is None or deleted < max_rows:
            chunk = PRUNE_CHUNK if max_rows is None else min(PRUNE_CHUNK, max_rows - deleted)
            cur = self._writer.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ? "
                "AND sent IS NOT 0 ORDER BY id LIMIT ?)",
                (cutoff, chunk),
            )
            deleted += cur.rowcount
            if cur.rowcount < chunk:
                break
        if deleted:
            log.info("store: pruned %d events older than %g days", deleted, retention_days)
        return deleted

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks the writer). Run from a thread."""
        with self._read_lock:
            self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        if self._writer is not None:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # still durable in the WAL; the next open replays it
                log.warning("store: final checkpoint failed: %s", exc)
            self._writer.close()
            self._writer = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def open_store(config: Config, environ: dict[str, str] | None = None) -> EventStore:
    path = Path(config.store.path) if config.store.path else default_store_path(environ)
    store = EventStore(path, outbox=config.sinks.nats.enabled)
    log.info("event store %s: last id %d", path, store.last_id())
    return store
