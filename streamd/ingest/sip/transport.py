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
from collections.abc import Callable
from typing import Any, cast

from streamd.protocols.sip.message import SipError, SipStreamFramer
from streamd.protocols.sip.transaction import Peer, Send

log = logging.getLogger("streamd.ingest.sip.server")

TCP_IDLE_S = 900.0  # SBCs keep TCP connections open between calls; CRLF pings reset this
READ_BYTES = 64 * 1024

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
    """SIP over TCP: Content-Length framing per connection; a framing error closes it."""

    def __init__(
        self,
        handler: Handler,
        max_message: int,
        max_connections: int,
        on_error: Callable[[str, str], None],
    ) -> None:
        self.handler = handler
        self.max_message = max_message
        self.max_connections = max_connections
        self.on_error = on_error
        self.writers: set[asyncio.StreamWriter] = set()
        self.refused = 0
        self.keepalives = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        name = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        if len(self.writers) >= self.max_connections:
            self.refused += 1
            self.on_error(name, f"over sources.sip.tcp_max_connections ({self.max_connections})")
            writer.close()
            return
        peer = Peer(str(addr[0]), int(addr[1]), "TCP", TcpChannel(writer))
        framer = SipStreamFramer(self.max_message)
        self.writers.add(writer)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_BYTES), TCP_IDLE_S)
                if not data:
                    return
                seen = framer.keepalives
                for message in framer.feed(data):
                    self.handler(message, peer)
                self.keepalives += framer.keepalives - seen
        except SipError as exc:
            self.on_error(name, f"framing error, closing the connection: {exc}")
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def close_all(self) -> None:
        for writer in list(self.writers):
            writer.close()
