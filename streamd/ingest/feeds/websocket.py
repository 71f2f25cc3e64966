"""The websocket side of the feeds that arrive over HTTP (Twilio, AudioHook, audio fork).

One handler for the three: authorize and check limits *before* the upgrade (a refused peer never
holds a connection), then read messages into the adapter's sans-I/O session and its events into
the shared ``FeedConnection``. When the session says the feed is over, the peer gets the grace
the protocol gives it to close first (Twilio after ``stop``, AudioHook after ``closed``), and
the socket is closed with the session's code.

aiohttp's own frame limit is set above ``max_message_bytes``, so a frame a little too big
reaches the session and gets the protocol's own answer (an AudioHook ``disconnect``, a 1009
close); one far too big is cut off by aiohttp and only logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Protocol

from aiohttp import WSMsgType, web

from streamd.ingest.feeds.connection import FeedLimits, FeedSource
from streamd.protocols.credentials import supplied_token, token_ok
from streamd.protocols.feeds.base import CLOSE_NORMAL, FeedEvent

if TYPE_CHECKING:
    from streamd.ingest.feeds.connection import FeedConnection

log = logging.getLogger("streamd.ingest.feeds.connection")

HEARTBEAT_S = 30.0  # websocket pings find peers that vanished without a FIN
CLOSE_GOING_AWAY = 1001


def source_keys(request: web.Request) -> tuple[str, ...]:
    """What a connection counts against besides the total: its address and its credential
    (bearer token or AudioHook's X-API-KEY, hashed so no secret is held in a counter)."""
    keys = [f"addr:{request.remote or '?'}"]
    credential = supplied_token(request.headers, request.query) or request.headers.get("X-API-KEY")
    if credential:
        digest = hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest()
        keys.append(f"cred:{digest[:16]}")
    return tuple(keys)


class WebSocketSession(Protocol):
    def receive_text(self, data: str | bytes) -> list[FeedEvent]: ...

    def receive_bytes(self, data: bytes) -> list[FeedEvent]: ...

    def connection_lost(self) -> list[FeedEvent]: ...


class WebSocketFeed(FeedSource):
    """A feed served on one websocket path of the daemon's HTTP port."""

    protocols: tuple[str, ...] = ()

    def __init__(self, path: str, limits: FeedLimits, tokens: list[str] | None = None) -> None:
        super().__init__(limits)
        self.path = path
        self.tokens = list(tokens or [])

    def setup_http(self, app: web.Application) -> None:
        app.router.add_get(self.path, self.handle)

    def authorize(self, request: web.Request) -> str | None:
        """Why this upgrade request may not connect (answered 401), or None: ``server.tokens``."""
        if token_ok(request.headers, request.query, self.tokens):
            return None
        return "missing or wrong bearer token"

    def new_session(self, request: web.Request) -> WebSocketSession:
        raise NotImplementedError

    def _refuse(
        self, request: web.Request, status: type[web.HTTPException], why: str
    ) -> web.HTTPException:
        self.warn(
            "%s %s: upgrade refused (%d): %s", self.name, request.remote, status.status_code, why
        )
        return status(text=json.dumps({"error": why}), content_type="application/json")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        why = self.authorize(request)
        if why is not None:
            self.counters.unauthorized += 1
            raise self._refuse(request, web.HTTPUnauthorized, why)
        keys = source_keys(request)
        why = self.refusal(keys)
        if why is not None:
            self.counters.refused += 1
            raise self._refuse(request, web.HTTPServiceUnavailable, why)
        ws = web.WebSocketResponse(
            protocols=self.protocols,
            heartbeat=HEARTBEAT_S,
            max_msg_size=2 * self.limits.max_message_bytes,
            compress=False,
        )
        await ws.prepare(request)
        session = self.new_session(request)

        async def close() -> None:
            await ws.close(code=CLOSE_GOING_AWAY, message=b"shutting down")

        conn = self.connect(request.remote or "?", send=ws.send_json, close=close, keys=keys)
        clean = False
        try:
            clean = await self._pump(ws, session, conn)
        finally:
            await conn.finish(session, clean)
            end = conn.disconnect
            code, reason = (end.code, end.reason) if end else (CLOSE_NORMAL, "done")
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=reason.encode("ascii", "replace")[:120])
        return ws

    async def _pump(
        self, ws: web.WebSocketResponse, session: WebSocketSession, conn: FeedConnection
    ) -> bool:
        """Messages into the session until the feed or the socket ends; True if it closed
        cleanly."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.001, deadline - loop.time())
            try:
                msg = await ws.receive(timeout)
            except asyncio.TimeoutError:
                return True  # the feed ended; the peer just did not close within the grace
            arrival = time.perf_counter()
            if msg.type is WSMsgType.TEXT:
                events = session.receive_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                events = session.receive_bytes(msg.data)
            else:
                if msg.type is WSMsgType.ERROR:
                    self.warn("%r: websocket error: %s", conn, msg.data)
                return msg.type is WSMsgType.CLOSE  # a close frame, not a dropped TCP connection
            conn.count(len(msg.data))
            end = await conn.feed(events, arrival)
            if end is not None and deadline is None:
                if end.grace_s <= 0 or ws.closed:
                    return True
                deadline = loop.time() + end.grace_s
