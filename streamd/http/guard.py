"""Edge protections of the HTTP port: a connection cap, a deadline for the request head, and
the ``Origin`` check on websocket upgrades.

aiohttp has neither a connection limit nor a header-read timeout, so thousands of half-open
requests could hold sockets (and file descriptors SIP and RTP need) for as long as the peer
likes. :class:`ConnectionGuard` wraps each connection's protocol: past ``server.max_connections``
a new connection is closed at once; a connection that has not completed a request head within
``server.header_timeout_s`` is closed. Idle keep-alive connections close after
``KEEPALIVE_S`` (aiohttp's ``keepalive_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger("streamd.http")

KEEPALIVE_S = 15.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionGuard:
    """Counts connections, refuses past the cap and times out slow request heads."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.refused = 0  # over the cap
        self.timed_out = 0  # no complete request head in time
        self._waiting: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}
        self._log_after = 0.0

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner())

    def _admit(self, transport: asyncio.BaseTransport) -> bool:
        if self.open >= self.max_connections:
            self.refused += 1
            self._warn(
                f"refused a connection: server.max_connections ({self.max_connections}) reached"
            )
            return False
        self.open += 1
        loop = asyncio.get_running_loop()
        self._waiting[transport] = loop.call_later(self.header_timeout_s, self._expire, transport)
        return True

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        if self._waiting.pop(transport, None) is not None:
            self.timed_out += 1
            self._warn("closed a connection: no request head within server.header_timeout_s")
            _abort(transport)

    def _release(self, transport: asyncio.BaseTransport) -> None:
        self.open -= 1
        timer = self._waiting.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def head_done(self, transport: asyncio.BaseTransport | None) -> None:
        timer = self._waiting.pop(transport, None) if transport is not None else None
        if timer is not None:
            timer.cancel()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Runs once aiohttp parsed a request head: the connection is no longer half-open."""
        self.head_done(request.transport)
        return await handler(request)

    def _warn(self, msg: str) -> None:
        now = time.monotonic()
        if now >= self._log_after:  # a flood must not flood the log too: one line per 10 s
            self._log_after = now + 10.0
            log.warning("%s (refused %d, timed out %d so far)", msg, self.refused, self.timed_out)

    def status(self) -> dict[str, int]:
        return {"open": self.open, "refused": self.refused, "timed_out": self.timed_out}


def _abort(transport: asyncio.BaseTransport) -> None:
    """Close now, without a FIN handshake or flushing: the peer is not worth the wait."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class _Guarded(asyncio.Protocol):
    """An aiohttp request handler with the guard's accounting around it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.guard._admit(transport):
            _abort(transport)
            return
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.guard._release(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose sites serve every connection through a :class:`ConnectionGuard`."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=KEEPALIVE_S, **kwargs)
        self.guard = guard

    @property
    def server(self) -> Any:  # what sites hand to loop.create_server: a protocol factory
        inner = super().server
        return None if inner is None else self.guard.factory(inner)


def origin_allowed(request: web.Request, allowed: Collection[str]) -> bool:
    """A browser's websocket upgrade may come only from this server's own pages or from
    ``server.allowed_origins``: a page on another site must not read events, tokens or not.
    Requests without ``Origin`` (not from a browser) pass; they authenticate with tokens."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    if "*" in allowed or origin in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == request.host.lower()
