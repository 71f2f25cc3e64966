"""The alert bus: numbers every event, makes it durable first, then hands it to every sink.

A sink is any callable taking the event dict. Sinks must not block: the websocket server puts
events on per-client bounded queues; stdout writes one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from streamd.events.schema import make_event

log = logging.getLogger("streamd.events")

Sink = Callable[[dict[str, Any]], None]


class EventLog(Protocol):
    """Durable storage that assigns ids (events/store.py implements it with SQLite)."""

    def append(self, event: dict[str, Any]) -> int: ...

    def last_id(self) -> int: ...


class EventBus:
    def __init__(self, store: EventLog | None = None, node: str | None = None) -> None:
        self.store = store
        self.node = node  # set when several daemons publish into one place (sinks.nats)
        self._next_id = (store.last_id() if store is not None else 0) + 1
        self._sinks: list[Sink] = []
        self.published = 0
        self.store_errors = 0

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def publish(
        self, type_: str, stream: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        event = make_event(self._next_id, type_, stream, node=self.node, **fields)
        if self.store is not None:
            try:
                event["id"] = self.store.append(event)
            except Exception as exc:
                # A full disk must not stop scoring or hide an alert from live subscribers; the
                # store burns the id it took, so ids stay unique. Replay will miss this event.
                self.store_errors += 1
                log.error("event %d (%s) not stored: %s", event["id"], type_, exc)
        self._next_id = event["id"] + 1
        self.published += 1
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # one broken sink must not stop the others or the pipeline
                log.exception("event sink %r failed", sink)
        return event


class JsonLinesSink:
    """Events as JSON lines on a text stream (stdout by default)."""

    def __init__(self, out: TextIO | None = None, types: set[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.types = types

    def __call__(self, event: dict[str, Any]) -> None:
        if self.types is None or event["type"] in self.types:
            self.out.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.out.flush()
