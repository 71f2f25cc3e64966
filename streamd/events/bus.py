"""The alert bus: numbers every event, makes it durable first, then hands it to every sink.

A sink is any callable taking the event dict. Sinks must not block: the websocket server puts
events on per-client bounded queues; stdout writes one JSON line.

With a store, an event goes to its sinks once the store's writer thread has committed it (or
failed to: a full disk must not hide an alert), in id order. So a client that sees an event live
can always find it again with ``since=``. The wait is bounded by ``max_live_delay_s``: if the
store stalls (another process holds its lock), events go out live anyway after that delay, under
ids that are still unique (see ``ids.py``), and are stored when the store recovers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from streamd.events.schema import make_event

log = logging.getLogger("streamd.events")

Sink = Callable[[dict[str, Any]], None]
MAX_LIVE_DELAY_S = 0.25


class EventLog(Protocol):
    """Durable storage that assigns ids (events/store.py implements it with SQLite)."""

    def append(self, event: dict[str, Any]) -> int: ...

    def last_id(self) -> int: ...

    def wait_written(self, upto: int, timeout: float = ...) -> bool: ...

    def on_written(self, callback: Callable[[int], None] | None) -> None: ...


class EventBus:
    def __init__(
        self,
        store: EventLog | None = None,
        node: str | None = None,
        max_live_delay_s: float = MAX_LIVE_DELAY_S,
    ) -> None:
        self.store = store
        self.node = node  # set when several daemons publish into one place (sinks.nats)
        self.max_live_delay_s = max_live_delay_s
        self._next_id = (store.last_id() if store is not None else 0) + 1
        self._sinks: list[Sink] = []
        self.published = 0
        self.store_errors = 0
        self.sent_before_stored = 0  # went live after max_live_delay_s without a commit
        # (published at, event, done: the store gave up on it) waiting for the writer, id order
        self._pending: deque[tuple[float, dict[str, Any], bool]] = deque()
        self._written_upto = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        if store is not None:
            store.on_written(self._written_from_thread)

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    @property
    def pending(self) -> int:
        """Events published but not yet handed to the sinks."""
        return len(self._pending)

    def publish(
        self, type_: str, stream: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        event = make_event(self._next_id, type_, stream, node=self.node, **fields)
        self.published += 1
        if self.store is None:
            self._next_id = event["id"] + 1
            self._fan_out(event)
            return event
        done = False
        try:
            event["id"] = self.store.append(event)
        except Exception as exc:
            # The store burns the id it took (or we use ours), so ids stay unique; the event
            # still goes out live, in order. Replay will miss it.
            done = True
            self.store_errors += 1
            log.error("event %d (%s) not stored: %s", event["id"], type_, exc)
        self._next_id = event["id"] + 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:  # no event loop (offline use): wait for the write right here
            if not done:
                self.store.wait_written(event["id"], self.max_live_delay_s)
            self._flush(force=True)
            self._fan_out(event)
            return event
        self._loop = loop
        self._pending.append((time.monotonic(), event, done))
        self._flush()
        return event

    def _written_from_thread(self, upto: int) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._written, upto)
        else:
            self._written_upto = max(self._written_upto, upto)

    def _written(self, upto: int) -> None:
        self._written_upto = max(self._written_upto, upto)
        self._flush()

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        while self._pending:
            t0, event, done = self._pending[0]
            late = now - t0 >= self.max_live_delay_s
            if not (force or done or late or event["id"] <= self._written_upto):
                break
            self._pending.popleft()
            if late and not done and event["id"] > self._written_upto:
                self.sent_before_stored += 1
            self._fan_out(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and self._loop is not None:
            wait = self._pending[0][0] + self.max_live_delay_s - now
            self._timer = self._loop.call_later(max(0.0, wait), self._flush)
        elif self._drained is not None:
            self._drained.set()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every published event went to the sinks (before closing the server)."""
        if not self._pending:
            return
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            self._flush(force=True)
        finally:
            self._drained = None

    def _fan_out(self, event: dict[str, Any]) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # one broken sink must not stop the others or the pipeline
                log.exception("event sink %r failed", sink)


class JsonLinesSink:
    """Events as JSON lines on a text stream (stdout by default)."""

    def __init__(self, out: TextIO | None = None, types: set[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.types = types

    def __call__(self, event: dict[str, Any]) -> None:
        if self.types is None or event["type"] in self.types:
            self.out.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.out.flush()
