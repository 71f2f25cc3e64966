"""The durable event log: SQLite in WAL mode, written by one thread of its own.

Ids come from :class:`~streamd.events.ids.IdCounter`, reserved ahead on disk, so an id is never
handed out twice: not after pruning, not after a write that failed, not after a ``kill -9``.
Every SQLite write (appends in batched transactions, pruning) runs on the store's writer thread,
never on the event loop: another process holding the write lock, or a slow disk, cannot stall
health checks or scoring. Reads for replay use a second connection from worker threads and first
wait until the writer has committed up to the ids they replay (:meth:`EventStore.wait_written`).

Durability: ``synchronous=NORMAL`` in WAL mode means a committed event survives a crash or
``kill -9`` of the daemon (it is in the OS page cache); only a power loss or kernel crash can lose
the last events since the previous checkpoint. An event whose write fails (a full disk) is still
sent live under its unique id, logged and counted in ``write_errors``.

The store is also the outbox of the NATS sink (events/nats_sink.py): with ``outbox`` on, rows are
written with ``sent = 0`` and marked ``sent = 1`` once JetStream acknowledged them; rows written
while no sink was configured (and rows from stores made before the column existed) have
``sent IS NULL`` and are never published. Pruning keeps unsent rows.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from streamd.errors import StreamdError
from streamd.events.ids import IdCounter, IdReservationError
from streamd.events.writer import Writer

if TYPE_CHECKING:
    from streamd.config import Config

log = logging.getLogger("streamd.store")

DEFAULT_FILE = "streamd-events.db"
PRUNE_CHUNK = 2000
_MOVE_ASIDE = "move it aside (the daemon then starts a new one) or repair it with sqlite3 .recover"

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
        self._ids: IdCounter | None = None
        self._writer: Writer | None = None
        self.appended = 0
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"store.path: cannot create {self.path.parent} ({exc.strerror})"
                ) from None
            self._take_lock()
            conn = self._connect()
            self._check(conn)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "store %s: journal_mode is %s, not wal (filesystem without shared memory?)",
                    self.path,
                    mode,
                )
            # Checkpoints (and their fsync) run from a worker thread via checkpoint(), not on
            # append.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.executescript(_SCHEMA)
            self._migrate(conn)
            try:
                self._ids = IdCounter(
                    self.path.with_name(self.path.name + ".ids"), self._high_water(conn)
                )
            except IdReservationError as exc:
                conn.close()
                raise StoreError(f"store.path: {exc.strerror}") from None
            self._writer = Writer(conn, self._ids)
            self._writer.start()
        elif not self.path.exists():
            raise StoreError(f"store.path: {self.path} does not exist")
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread off: opened here, then used by the writer thread or worker threads.
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"store.path: {self.path} is not a usable SQLite database ({exc}); {_MOVE_ASIDE}"
            ) from None
        except sqlite3.Error as exc:
            raise StoreError(f"store.path: cannot open {self.path} ({exc})") from None
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        """Refuse a corrupted store at start with one clear line, not errors later."""
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"store.path: {self.path} is not a usable SQLite database ({exc}); {_MOVE_ASIDE}"
            ) from None
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        if problems:
            conn.close()
            raise StoreError(
                f"store.path: {self.path} is corrupted ({'; '.join(problems[:3])}); {_MOVE_ASIDE}"
            )

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

    @property
    def write_errors(self) -> int:
        """Events that got an id and went out live but could not be stored."""
        return self._writer.errors if self._writer is not None else 0

    def append(self, event: dict[str, Any]) -> int:
        """Give ``event`` the next id, queue it for the writer thread and return the id.

        Never blocks on SQLite. The id is unique even if the write later fails: see ids.py.
        Raises :class:`StoreError` when the writer is too far behind (the event then goes out
        live only, under the id it was given).
        """
        if self._writer is None or self._ids is None:
            raise StoreError("the event store is read-only or closed")
        event_id = self._ids.take()
        event["id"] = event_id
        self.appended += 1
        stream = event.get("stream")
        call_id = stream.get("call_id") if isinstance(stream, dict) else None
        body = json.dumps(event, separators=(",", ":"))
        sent = 0 if self.outbox else None
        self._writer.put((event_id, time.time(), str(event["type"]), call_id, body, sent))
        return event_id

    def last_id(self) -> int:
        """The highest id ever handed out (kept even when those events were pruned)."""
        if self._ids is not None:
            return self._ids.last
        with self._read_lock:
            return self._high_water(self._reader)

    def on_written(self, callback: Callable[[int], None] | None) -> None:
        """Call ``callback(upto)`` from the writer thread after each batch is committed (or
        failed): every id up to ``upto`` is then final. The bus uses it to send events live."""
        if self._writer is not None:
            self._writer.callback = callback

    def wait_written(self, upto: int, timeout: float = 10.0) -> bool:
        """Block (in a worker thread) until every id up to ``upto`` was written or failed."""
        if self._writer is None:
            return True
        return self._writer.wait(upto, timeout)

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
        self.wait_written(self.last_id())
        return [json.loads(body) for _, body in self.read_raw(after_id, types, call_id, limit)]

    def count(self) -> int:
        self.wait_written(self.last_id())
        with self._read_lock:
            return int(self._reader.execute("SELECT count(*) FROM events").fetchone()[0])

    def open_streams(self) -> list[dict[str, Any]]:
        """``stream`` objects started but never ended in the last run (it crashed mid-call).

        The last run is everything after its ``daemon.status`` ready event, so a stream id that
        an earlier run reused does not count.
        """
        with self._read_lock:
            row = self._reader.execute(
                "SELECT max(id) FROM events WHERE type = 'daemon.status' "
                "AND json_extract(body, '$.state') = 'ready'"
            ).fetchone()
            since = int(row[0]) if row and row[0] is not None else 0
            rows = self._reader.execute(
                "SELECT type, json_extract(body, '$.stream') FROM events "
                "WHERE id > ? AND type IN ('stream.started', 'stream.ended') ORDER BY id",
                (since,),
            ).fetchall()
        open_: dict[str, dict[str, Any]] = {}
        for type_, stream_json in rows:
            stream = json.loads(stream_json) if stream_json else {}
            sid = str(stream.get("stream_id", ""))
            if type_ == "stream.started":
                open_[sid] = stream
            else:
                open_.pop(sid, None)
        return list(open_.values())

    def prune(
        self, retention_days: float, now: float | None = None, max_rows: int | None = None
    ) -> int:
        """Delete events older than ``retention_days`` (at most ``max_rows``); return how many.

        Runs on the writer thread between append batches, in chunks of ``PRUNE_CHUNK`` rows
        (call it from a worker thread; it waits for the result). ``sqlite_sequence`` keeps the
        high-water mark, so pruned ids are never handed out again.
        """
        if self._writer is None:
            raise StoreError("the event store is read-only or closed")
        cutoff = (time.time() if now is None else now) - retention_days * 86400.0

        def run(conn: sqlite3.Connection) -> int:
            deleted = 0
            while max_rows is None or deleted < max_rows:
                chunk = PRUNE_CHUNK if max_rows is None else min(PRUNE_CHUNK, max_rows - deleted)
                n = conn.execute(
                    "DELETE FROM events WHERE id IN "
                    "(SELECT id FROM events WHERE ts < ? AND sent IS NOT 0 ORDER BY id LIMIT ?)",
                    (cutoff, chunk),
                ).rowcount
                deleted += n
                if n < chunk:
                    break
            return deleted

        deleted = int(self._writer.call(run))
        if deleted:
            log.info("store: pruned %d events older than %g days", deleted, retention_days)
        return deleted

    def read_unsent(
        self, after_id: int = 0, limit: int = 1000
    ) -> list[tuple[int, str, str | None, str]]:
        """``(id, type, call_id, json text)`` of outbox rows not yet acknowledged, oldest first."""
        self.wait_written(self.last_id())
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT id, type, call_id, body FROM events WHERE sent = 0 AND id > ? "
                "ORDER BY id LIMIT ?",
                (int(after_id), int(limit)),
            ).fetchall()
        return [(int(i), str(t), None if c is None else str(c), str(b)) for i, t, c, b in rows]

    def mark_sent(self, upto_id: int, from_id: int = 0) -> int:
        """Mark outbox rows ``from_id <= id <= upto_id`` sent; return how many changed.

        Runs on the writer thread: call it from a worker thread (it waits for the result)."""
        if self._writer is None:
            raise StoreError("the event store is read-only or closed")
        return int(
            self._writer.call(
                lambda conn: (
                    conn.execute(
                        "UPDATE events SET sent = 1 WHERE sent = 0 AND id >= ? AND id <= ?",
                        (int(from_id), int(upto_id)),
                    ).rowcount
                )
            )
        )

    def unsent_count(self) -> int:
        self.wait_written(self.last_id())
        with self._read_lock:
            return int(
                self._reader.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0]
            )

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks the writer). Run from a thread."""
        with self._read_lock:
            self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        with self._read_lock:
            self._reader.close()
        if self._ids is not None:
            self._ids.close()
            self._ids = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def open_store(config: Config, environ: dict[str, str] | None = None) -> EventStore:
    path = Path(config.store.path) if config.store.path else default_store_path(environ)
    store = EventStore(path, outbox=config.sinks.nats.enabled)
    log.info("event store %s: last id %d", path, store.last_id())
    return store
