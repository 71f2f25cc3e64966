"""Event JSON version 1 (docs/design.md, "Event schema").

Clients ignore unknown fields; breaking changes bump ``v``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "stream.started",
    "window.scored",
    "alert.raised",
    "alert.cleared",
    "stream.ended",
    "daemon.status",
)


def utc_timestamp(t: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, as in the schema example: 2026-11-22T10:00:03.120Z."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def make_event(
    event_id: int,
    type_: str,
    stream: dict[str, Any] | None = None,
    ts: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    event: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": int(event_id),
        "type": type_,
        "ts": utc_timestamp(ts),
    }
    if stream is not None:
        event["stream"] = stream
    event.update({k: v for k, v in fields.items() if v is not None})
    return event


def validate_event(event: dict[str, Any]) -> None:
    """Raise ``ValueError`` when an event breaks the v1 contract (used by tests and consumers)."""
    for key, kind in (("v", int), ("id", int), ("type", str), ("ts", str)):
        if not isinstance(event.get(key), kind):
            raise ValueError(f"event field {key!r} missing or not {kind.__name__}")
    if event["v"] != SCHEMA_VERSION:
        raise ValueError(f"unsupported event version {event['v']}")
    if event["type"] not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event['type']!r}")
    if event["type"] != "daemon.status":
        stream = event.get("stream")
        if not isinstance(stream, dict):
            raise ValueError("stream events need a 'stream' object")
        for key in ("stream_id", "call_id", "leg", "source", "labels"):
            if key not in stream:
                raise ValueError(f"stream.{key} missing")
    if event["type"] in ("window.scored", "alert.raised", "alert.cleared"):
        if not isinstance(event.get("score"), (int, float)):
            raise ValueError("score missing")
        window = event.get("window")
        if not isinstance(window, dict) or "start_s" not in window or "end_s" not in window:
            raise ValueError("window.start_s / window.end_s missing")
        if not isinstance(event.get("model"), dict):
            raise ValueError("model missing")
    if event["type"] == "stream.ended" and not isinstance(event.get("summary"), dict):
        raise ValueError("stream.ended needs a summary")
