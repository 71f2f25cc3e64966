"""SIP transports: UDP datagrams and TCP byte streams, in and out.

Every message that arrives goes to one handler with a :class:`Peer` whose ``channel`` answers
on the same socket or connection; :func:`send` carries out a
:class:`~streamd.protocols.sip.transaction.Send`. Transactions, timers and retransmissions are
not here: :mod:`streamd.protocols.sip.transaction` decides, sans-I/O, what goes out and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

from streamd.protocols.sip.message import SipError, SipStreamFramer
from streamd.protocols.sip.transaction import Peer, Send

log = logging.getLogger("streamd.ingest.sip.server")

READ_BYTES = 64 * 1024
TLS_HANDSHAKE_S = 10.0

Handler = Callable[[bytes, Peer], None]


class Channel:
    """What a :class:`Peer` is answered through (a socket or a connection)."""

    def write(self, data: bytes, target: tuple[str, int]) -> None:
        raise NotImplementedError


def send(action: Send) -> None:
    """Put one message on the wire; a peer that is gone is the transaction's problem (it times
    out), never the caller's."""
    channel = action.peer.channel
    if not isinstance(channel, Channel):
        raise TypeError(f"SIP peer {action.peer.ip}:{action.peer.port} has no channel")
    try:
        channel.write(action.data, action.target)
    except (OSError, RuntimeError) as exc:
        log.debug("send to %s:%d failed: %s", action.peer.ip, action.peer.port, exc)


class SipUdp(asyncio.DatagramProtocol, Channel):
    """Hands every datagram to the handler with a :class:`Peer` that answers by UDP."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.handler(data, Peer(str(addr[0]), int(addr[1]), "UDP", self))

    def write(self, data: bytes, target: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, target)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable for a response
        log.debug("SIP UDP: %s", exc)


class TcpChannel(Channel):
    """One TCP connection: everything for the peer goes back on it, whatever the target."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, data: bytes, target: tuple[str, int]) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class SipTcp:
    """SIP over TCP (or TLS: ``transport``): Content-Length framing per connection; a framing
    error closes it. Checked at accept, before a byte is read: the source must be in
    ``allow_from`` (else closed, counted ``refused_source``), and under the global and
    per-address caps. A connection with no message (or CRLF ping) for ``idle_s`` is closed."""

    def __init__(
        self,
        handler: Handler,
        max_message: int,
        max_connections: int,
        on_error: Callable[[str, str], None],
        *,
        allowed: Callable[[str], bool] = lambda ip: True,
        max_per_source: int | None = None,
        idle_s: float = 300.0,
        transport: str = "TCP",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.max_message = max_message
        self.max_connections = max_connections
        self.on_error = on_error
        self.allowed = allowed
        self.max_per_source = max_per_source or max_connections
        self.idle_s = idle_s
        self.transport = "TLS" if tls is not None else transport
        self.tls = tls
        self.writers: set[asyncio.StreamWriter] = set()
        self.per_source: dict[str, int] = {}
        self.refused = 0  # over a connection cap
        self.refused_source = 0  # from outside allow_from: closed at accept
        self.idle_closed = 0
        self.tls_failed = 0
        self.keepalives = 0

    def _admit(self, ip: str, name: str) -> bool:
        if not self.allowed(ip):
            self.refused_source += 1
            self.on_error(name, "not in allow_from: closed at accept")
            return False
        if len(self.writers) >= self.max_connections:
            self.refused += 1
            self.on_error(name, f"over sources.sip.tcp_max_connections ({self.max_connections})")
            return False
        if self.per_source.get(ip, 0) >= self.max_per_source:
            self.refused += 1
            self.on_error(name, f"over sources.sip.tcp_max_per_source ({self.max_per_source})")
            return False
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        name = f"{self.transport} {addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        ip = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        if not self._admit(ip, name):
            writer.transport.abort()  # no lingering: the slot is free now
            return
        if self.tls is not None:  # the handshake after the checks: strangers cost no crypto
            try:
                await writer.start_tls(self.tls, ssl_handshake_timeout=TLS_HANDSHAKE_S)
            except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
                self.tls_failed += 1
                self.on_error(name, f"TLS handshake failed: {exc}")
                writer.transport.abort()
                return
        peer = Peer(ip, int(addr[1]), self.transport, TcpChannel(writer))
        framer = SipStreamFramer(self.max_message)
        self.writers.add(writer)
        self.per_source[ip] = self.per_source.get(ip, 0) + 1
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(READ_BYTES), self.idle_s)
                except asyncio.TimeoutError:
                    self.idle_closed += 1
                    self.on_error(name, f"no message for {self.idle_s:.0f} s (tcp_idle_s): closed")
                    return
                if not data:
                    return
                seen = framer.keepalives
                for message in framer.feed(data):
                    self.handler(message, peer)
                self.keepalives += framer.keepalives - seen
        except SipError as exc:
            self.on_error(name, f"framing error, closing the connection: {exc}")
        except OSError:
            pass
        finally:
            self.writers.discard(writer)
            left = self.per_source.pop(ip, 1) - 1
            if left:
                self.per_source[ip] = left
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def close_all(self) -> None:
        for writer in list(self.writers):
            writer.close()
