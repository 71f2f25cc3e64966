"""``POST /v1/alerts/{alert_id}/acknowledge``: a supervisor takes ownership of an alert.

The acknowledgement is an ``alert.acknowledged`` event on the bus, so it is stored, replayed and
fanned out like every other event (the dashboard learns of acks from other consoles that way).
Tokens are the ones of ``/v1/events``. ``alert_id`` is the id of the ``alert.raised`` event; its
stream is looked up in a bounded index of recent alerts fed by the bus, else in the store.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streamd.http.auth import require_token

if TYPE_CHECKING:
    from streamd.events.bus import EventBus
    from streamd.events.store import EventStore

ACK_PATH = "/v1/alerts/{alert_id}/acknowledge"
INDEX_SIZE = 20_000  # recent alert.raised events remembered without asking the store
MAX_BY = 100
MAX_NOTE = 500


class AlertIndex:
    """Bus sink: recent raised alerts (id -> stream) and who acknowledged each, bounded."""

    def __init__(self, size: int = INDEX_SIZE) -> None:
        self.size = size
        self.streams: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.acked: dict[int, dict[str, Any]] = {}
        self.latest: dict[str, int] = {}  # stream_id -> its latest alert.raised id

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == "alert.raised":
            self.streams[event["id"]] = event["stream"]
            self.latest[event["stream"]["stream_id"]] = event["id"]
            while len(self.streams) > self.size:
                old, stream = self.streams.popitem(last=False)
                self.acked.pop(old, None)
                if self.latest.get(stream["stream_id"]) == old:
                    del self.latest[stream["stream_id"]]
        elif event["type"] == "alert.acknowledged":
            self.acked[event["alert_id"]] = event


def _bad(detail: str, status: type[web.HTTPException] = web.HTTPBadRequest) -> web.HTTPException:
    return status(
        text=json.dumps({"error": "bad request", "detail": detail}),
        content_type="application/json",
    )


def _text(body: dict[str, Any], key: str, limit: int, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{key}: a non-empty string is required")
    if len(value) > limit:
        raise _bad(f"{key}: at most {limit} characters")
    return value.strip()


def setup_alerts(
    app: web.Application, bus: EventBus, store: EventStore | None, tokens: Sequence[str]
) -> AlertIndex:
    index = AlertIndex()
    bus.add_sink(index)

    async def stream_of(alert_id: int) -> dict[str, Any] | None:
        if alert_id in index.streams:
            return index.streams[alert_id]
        if store is not None:  # a store read waits for the writer thread: never on the loop
            events = await asyncio.to_thread(
                store.read_since, alert_id - 1, ["alert.raised"], None, 1
            )
            for event in events:
                if event["id"] == alert_id:
                    stream: dict[str, Any] = event["stream"]
                    return stream
        return None

    async def acknowledge(request: web.Request) -> web.Response:
        require_token(request, tokens)
        try:
            alert_id = int(request.match_info["alert_id"])
        except ValueError:
            raise _bad("alert_id: the id of an alert.raised event (an integer)") from None
        try:
            body = await request.json()
        except ValueError:
            raise _bad('send JSON: {"by": "<who>", "note": "<optional>"}') from None
        if not isinstance(body, dict):
            raise _bad('send a JSON object: {"by": "<who>", "note": "<optional>"}')
        by = _text(body, "by", MAX_BY, required=True)
        note = _text(body, "note", MAX_NOTE, required=False)
        stream = await stream_of(alert_id)
        if stream is None:
            raise _bad(f"no alert.raised event with id {alert_id}", web.HTTPNotFound)
        if alert_id in index.acked:
            prior = index.acked[alert_id]
            raise web.HTTPConflict(
                text=json.dumps(
                    {
                        "error": "already acknowledged",
                        "detail": (
                            f"alert {alert_id} was acknowledged by {prior['by']} at {prior['ts']}"
                        ),
                        "event": prior,
                    }
                ),
                content_type="application/json",
            )
        event = bus.publish("alert.acknowledged", stream, alert_id=alert_id, by=by, note=note)
        index.acked[alert_id] = event  # now, not when the bus hands it on: a second POST is a 409
        return web.json_response(event)

    app.router.add_post(ACK_PATH, acknowledge)
    return index
