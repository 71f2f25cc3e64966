"""Event JSON, version 2 (docs/design.md, "Event schema"; changes in docs/events-changelog.md).

Clients ignore unknown fields; breaking changes bump ``v``. One name means one thing in every
event: ``score`` is always the model's raw p_fake for one window, ``smoothed`` always the
per-stream smoothed score that the alert thresholds apply to.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 2

EVENT_TYPES = (
    "stream.started",
    "window.scored",
    "alert.raised",
    "alert.cleared",
    "alert.acknowledged",
    "stream.ended",
    "daemon.status",
)

#: why an alert was cleared: the smoothed score fell, or its stream ended while it was raised
CLEAR_REASONS = ("score", "stream_ended")

_SCORED = ("window.scored", "alert.raised", "alert.cleared")


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


def _number(event: dict[str, Any], key: str) -> None:
    if not isinstance(event.get(key), (int, float)) or isinstance(event.get(key), bool):
        raise ValueError(f"{event['type']}: {key} missing or not a number")


def validate_event(event: dict[str, Any]) -> None:
    """Raise ``ValueError`` when an event breaks the v2 contract (used by tests and consumers)."""
    for key, kind in (("v", int), ("id", int), ("type", str), ("ts", str)):
        if not isinstance(event.get(key), kind):
            raise ValueError(f"event field {key!r} missing or not {kind.__name__}")
    if event["v"] != SCHEMA_VERSION:
        raise ValueError(f"unsupported event version {event['v']}")
    kind = event["type"]
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    if kind != "daemon.status":
        stream = event.get("stream")
        if not isinstance(stream, dict):
            raise ValueError("stream events need a 'stream' object")
        for key in ("stream_id", "call_id", "leg", "source", "labels"):
            if key not in stream:
                raise ValueError(f"stream.{key} missing")
    if kind in _SCORED:
        _number(event, "score")
        _number(event, "smoothed")
        window = event.get("window")
        if not isinstance(window, dict) or "start_s" not in window or "end_s" not in window:
            raise ValueError("window.start_s / window.end_s missing")
        if not isinstance(event.get("model"), dict):
            raise ValueError("model missing")
    if kind == "alert.cleared" and event.get("reason") not in CLEAR_REASONS:
        raise ValueError(f"alert.cleared: reason must be one of {CLEAR_REASONS}")
    if kind == "alert.acknowledged":
        if not isinstance(event.get("alert_id"), int):
            raise ValueError("alert.acknowledged: alert_id (the alert.raised event id) missing")
        if not isinstance(event.get("by"), str) or not event["by"]:
            raise ValueError("alert.acknowledged: by (who acknowledged) missing")
    if kind == "stream.ended":
        if not isinstance(event.get("summary"), dict):
            raise ValueError("stream.ended needs a summary")
        alert = event.get("alert")
        if not isinstance(alert, dict) or not isinstance(alert.get("raised_at_end"), bool):
            raise ValueError("stream.ended needs alert.raised_at_end (the final alert state)")
