"""``GET /v1/events``: the event websocket, with replay from the store and a bounded queue per
client.

The seam between replay and live has no gap and no duplicate because the bus publishes
synchronously on the event loop: the client is subscribed to live events and the bus's last id is
read in one step with no ``await`` between, so every event up to that id is in the store and every
later one lands in the client's queue. Replay sends stored events up to that id; the live loop then
skips anything at or below the last id sent.

A client that falls behind fills its queue. The publisher never waits for it: the fan-out only
``put_nowait``s, and on overflow the client is dropped and closed with 1013 (try again later). It
resumes with ``since=`` from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from streamd.events.schema import EVENT_TYPES
from streamd.http.auth import require_token
from streamd.http.guard import origin_allowed

if TYPE_CHECKING:
    from streamd.events.bus import EventBus
    from streamd.events.store import EventStore

log = logging.getLogger("streamd.http.events")

REPLAY_PAGE = 500
CLOSE_TIMEOUT_S = 5.0
HEARTBEAT_S = 30.0
TRY_AGAIN_LATER = 1013

Item = tuple[int, str] | None  # (id, JSON text); None tells the sender to finish


@dataclass(frozen=True)
class EventFilter:
    types: frozenset[str] | None = None
    call_id: str | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.types is not None and event.get("type") not in self.types:
            return False
        if self.call_id is not None:
            stream = event.get("stream")
            return isinstance(stream, dict) and stream.get("call_id") == self.call_id
        return True


def parse_query(query: Mapping[str, str]) -> tuple[int | None, EventFilter]:
    """``since``, ``types`` and ``call_id`` from the query string; HTTP 400 names a bad one."""
    since: int | None = None
    if "since" in query:
        try:
            since = int(query["since"])
        except ValueError:
            since = -1
        if since < 0:
            raise web.HTTPBadRequest(
                text=f"since: must be an event id (an integer >= 0), got {query['since']!r}"
            )
    types: frozenset[str] | None = None
    if query.get("types"):
        wanted = frozenset(t.strip() for t in query["types"].split(",") if t.strip())
        unknown = sorted(wanted - set(EVENT_TYPES))
        if unknown:
            raise web.HTTPBadRequest(
                text=f"types: unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}"
            )
        types = wanted
    return since, EventFilter(types, query.get("call_id") or None)


class Subscriber:
    """One websocket client: its filter, its bounded queue, and why it was closed."""

    def __init__(self, peer: str, filt: EventFilter, maxsize: int) -> None:
        self.peer = peer
        self.filter = filt
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize)
        self.sender: asyncio.Task[None] | None = None
        self.overflowed = False
        self.beyond: int | None = None  # the since= it asked for is past the last id
        self.last_sent = 0


class EventFanout:
    """The bus sink: encodes each event once and offers it to every matching subscriber."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.subscribers)

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def discard(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def __call__(self, event: dict[str, Any]) -> None:
        text: str | None = None
        for sub in tuple(self.subscribers):
            if not sub.filter.matches(event):
                continue
            if text is None:
                text = json.dumps(event, separators=(",", ":"))
            try:
                sub.queue.put_nowait((event["id"], text))
            except asyncio.QueueFull:
                self.drop(sub)

    def drop(self, sub: Subscriber) -> None:
        """Overflow: forget the client now; its handler closes it with 1013."""
        self.subscribers.discard(sub)
        sub.overflowed = True
        self.dropped += 1
        log.warning(
            "events client %s too slow: queue of %d events full after id %d; closing with 1013 "
            "(it can resume with since=%d)",
            sub.peer,
            sub.queue.maxsize,
            sub.last_sent,
            sub.last_sent,
        )
        if sub.sender is not None:
            sub.sender.cancel()


class EventsEndpoint:
    def __init__(
        self,
        bus: EventBus,
        store: EventStore | None,
        tokens: Sequence[str],
        client_queue: int,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        self.bus = bus
        self.store = store
        self.tokens = list(tokens)
        self.client_queue = client_queue
        self.allowed_origins = list(allowed_origins)
        self.fanout = EventFanout()
        self.stopping = False
        self._active: dict[Subscriber, asyncio.Future[None]] = {}
        bus.add_sink(self.fanout)

    @property
    def clients(self) -> int:
        return len(self._active)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, self.allowed_origins):
            log.warning(
                "events client %s refused: Origin %s is not this server's nor in "
                "server.allowed_origins",
                request.remote,
                request.headers.get("Origin"),
            )
            raise web.HTTPForbidden(text="Origin not allowed (server.allowed_origins)")
        require_token(request, self.tokens)
        since, filt = parse_query(request.query)
        if self.stopping:
            raise web.HTTPServiceUnavailable(text="shutting down")
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S, compress=False, max_msg_size=64 * 1024, timeout=CLOSE_TIMEOUT_S
        )
        await ws.prepare(request)
        sub = Subscriber(request.remote or "?", filt, self.client_queue)
        # Subscribe and read the seam in one step (no await between): see the module docstring.
        self.fanout.add(sub)
        seam = self.bus.last_id
        sub.sender = asyncio.create_task(self._send(ws, sub, since, seam))
        reader = asyncio.create_task(self._read(ws))
        finished = self._active[sub] = asyncio.get_running_loop().create_future()
        log.info(
            "events client %s connected (since=%s types=%s call_id=%s)",
            sub.peer,
            since,
            sorted(filt.types) if filt.types else "all",
            filt.call_id,
        )
        try:
            await asyncio.wait({sub.sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.fanout.discard(sub)
            for t in (sub.sender, reader):
                t.cancel()
            await asyncio.gather(sub.sender, reader, return_exceptions=True)
            try:
                await self._close(ws, request, sub)
            finally:
                del self._active[sub]
                finished.set_result(None)
        return ws

    async def _send(
        self, ws: web.WebSocketResponse, sub: Subscriber, since: int | None, seam: int
    ) -> None:
        sub.last_sent = seam if since is None else since
        if since is not None and since > seam:
            # An id this store never handed out: another daemon's, or a store that was reset.
            # Say so rather than wait in silence for ids that may never come.
            sub.beyond = since
            return
        if since is not None and since < seam and self.store is not None:
            await asyncio.to_thread(self.store.wait_written, seam)
            await self._replay(ws, sub, seam)
        while True:
            item = await sub.queue.get()
            if item is None:
                return
            event_id, text = item
            if event_id <= sub.last_sent:
                continue
            sub.last_sent = event_id  # send_str writes before it can be cancelled (in drain)
            await ws.send_str(text)

    async def _replay(self, ws: web.WebSocketResponse, sub: Subscriber, seam: int) -> None:
        assert self.store is not None
        types = sorted(sub.filter.types) if sub.filter.types else None
        while True:
            rows = await asyncio.to_thread(
                self.store.read_raw, sub.last_sent, types, sub.filter.call_id, REPLAY_PAGE, seam
            )
            for event_id, text in rows:
                sub.last_sent = event_id
                await ws.send_str(text)
            if len(rows) < REPLAY_PAGE:
                return

    @staticmethod
    async def _read(ws: web.WebSocketResponse) -> None:
        """Clients send nothing we act on, but reading answers pings and notices a close."""
        async for _ in ws:
            pass

    async def _close(
        self, ws: web.WebSocketResponse, request: web.Request, sub: Subscriber
    ) -> None:
        if ws.closed:
            log.info("events client %s left after id %d", sub.peer, sub.last_sent)
            return
        code: int
        if sub.beyond is not None:
            code = WSCloseCode.POLICY_VIOLATION
            why = f"since={sub.beyond} is beyond the last event id {self.bus.last_id}"
            sub.last_sent = self.bus.last_id
        elif sub.overflowed:
            code, why = TRY_AGAIN_LATER, "too slow"
        elif self.stopping:
            code, why = WSCloseCode.GOING_AWAY, "shutting down"
        else:
            code, why = WSCloseCode.OK, "done"
        message = f"{why}; resume with since={sub.last_sent}".encode()[:123]
        with contextlib.suppress(Exception):
            await ws.close(code=code, message=message, drain=False)
        log.info(
            "events client %s closed with %d (%s) after id %d", sub.peer, code, why, sub.last_sent
        )
        if ws.close_code == WSCloseCode.ABNORMAL_CLOSURE and request.transport is not None:
            # The client never answered the close: drop the socket rather than hold its buffers.
            request.transport.abort()

    async def shutdown(self, timeout: float) -> None:
        """Send each client what is queued (the final ``stream.ended`` events), then close with
        1001."""
        self.stopping = True
        await self.bus.drain(timeout)  # events published but still waiting for the store
        for sub in tuple(self.fanout.subscribers):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                self.fanout.drop(sub)
        if not self._active:
            return
        _, pending = await asyncio.wait(set(self._active.values()), timeout=timeout)
        if pending:
            log.warning(
                "%d events clients did not take their last events within %.1f s",
                len(pending),
                timeout,
            )
            for sub in tuple(self._active):
                if sub.sender is not None:
                    sub.sender.cancel()
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
