"""The store's writer thread: the only code that writes to SQLite.

Appends arrive as rows on a queue and are written in batched transactions; jobs (pruning, marking
outbox rows sent) run between batches, in queue order. After each batch every id up to the last
one is final (written or failed), which is what replay waits for and what the bus sends live.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from streamd.errors import StreamdError
from streamd.events.ids import IdCounter

log = logging.getLogger("streamd.store")

MAX_PENDING = 50_000  # events waiting for the writer; past this they are sent live only
BATCH = 500  # rows per write transaction


class WriterBacklogError(StreamdError):
    """The writer is too far behind; the event goes out live only."""


_Row = tuple[int, float, str, "str | None", str, "int | None"]
_Job = tuple[Callable[[sqlite3.Connection], Any], "Future[Any]"]


_JOB_LEN = 2  # a queued item of this length is a job, not a row


class Writer(threading.Thread):
    """The only thread that writes to SQLite: batched INSERTs, jobs (pruning) in between."""

    def __init__(self, conn: sqlite3.Connection, ids: IdCounter) -> None:
        super().__init__(name="streamd-store-writer", daemon=True)
        self.conn = conn
        self.ids = ids
        self.q: queue.SimpleQueue[_Row | _Job | None] = queue.SimpleQueue()
        self.pending = 0  # rows queued and not yet written (or failed)
        self.errors = 0
        self.written_upto = ids.last  # every id <= this is written or failed
        self._cond = threading.Condition()
        self._log_after = 0.0
        self.callback: Callable[[int], None] | None = None

    def put(self, row: _Row) -> None:
        if self.pending >= MAX_PENDING:
            with self._cond:  # the ids below this one stay waitable: mark it as done (failed)
                self.errors += 1
            raise WriterBacklogError(f"the store writer is {self.pending} events behind")
        with self._cond:
            self.pending += 1
        self.q.put(row)

    def call(self, fn: Callable[[sqlite3.Connection], Any], timeout: float = 60.0) -> Any:
        fut: Future[Any] = Future()
        self.q.put((fn, fut))
        return fut.result(timeout)

    def wait(self, upto: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self.written_upto >= upto or self.pending == 0, timeout
            )

    def stop(self) -> None:
        self.q.put(None)
        self.join()
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # still durable in the WAL; the next open replays it
            log.warning("store: final checkpoint failed: %s", exc)
        self.conn.close()

    def run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if len(item) == _JOB_LEN:
                self._run_job(item)  # type: ignore[arg-type]
                continue
            rows: list[_Row] = [item]  # type: ignore[list-item]
            stop = False
            while len(rows) < BATCH:
                try:
                    more = self.q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if len(more) == _JOB_LEN:
                    self._write(rows)
                    rows = []
                    self._run_job(more)  # type: ignore[arg-type]
                    continue
                rows.append(more)  # type: ignore[arg-type]
            if rows:
                self._write(rows)
            if self.ids.needs_top_up():
                try:
                    self.ids.top_up()
                except OSError as exc:
                    log.error("store: %s", exc)
            if stop:
                return

    def _run_job(self, job: _Job) -> None:
        fn, fut = job
        try:
            fut.set_result(fn(self.conn))
        except BaseException as exc:  # handed to the caller
            fut.set_exception(exc)

    def _write(self, rows: list[_Row]) -> None:
        failed = 0
        try:
            with self.conn:  # one transaction per batch
                self.conn.execute("BEGIN")
                self.conn.executemany(
                    "INSERT INTO events (id, ts, type, call_id, body, sent) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            failed = len(rows)
            now = time.monotonic()
            if now >= self._log_after:  # a full disk fails every batch: one line per 10 s
                self._log_after = now + 10.0
                log.error(
                    "store: %d events (ids %d-%d) not stored: %s; they went out live",
                    len(rows),
                    rows[0][0],
                    rows[-1][0],
                    exc,
                )
        with self._cond:
            self.errors += failed
            self.pending -= len(rows)
            self.written_upto = max(self.written_upto, rows[-1][0])
            self._cond.notify_all()
        callback = self.callback
        if callback is not None:
            try:
                callback(self.written_upto)
            except Exception:  # the loop may be closing; the bus flushes on its own timer
                log.exception("store: written callback failed")
