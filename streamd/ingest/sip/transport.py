"""SIP transports (UDP datagrams, TCP byte streams) and the server transaction table.

RFC 3261 §17.2 in the small. A request's transaction is its top Via branch plus its method; the
ACK for a non-2xx final response and a CANCEL carry the INVITE's branch, so they find it. A
retransmitted request gets the last response sent again and is never processed twice. Over UDP,
final responses to INVITE are resent on T1 doubling up to T2 until the ACK comes (Timer G for
non-2xx, §13.3.1.4 for 2xx) or 64*T1 passes; a 2xx that is never ACKed ends the call. Over TCP
the hop is reliable and nothing is resent. Entries live 64*T1 after their final response, and
the table is bounded, so a flood of distinct branches cannot grow it without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from streamd.protocols.sip.message import (
    SipError,
    SipRequest,
    SipStreamFramer,
    build_response,
    parse_message,
)

log = logging.getLogger("streamd.ingest.sip.server")

T1 = 0.5
T2 = 4.0
TRANSACTION_S = 64 * T1
TCP_IDLE_S = 900.0  # SBCs keep TCP connections open between calls; CRLF pings reset this
READ_BYTES = 64 * 1024
REQUEST_SENDS = 4


@dataclass
class SipCounters:
    requests: Counter[str] = field(default_factory=Counter)  # by method
    responses: Counter[int] = field(default_factory=Counter)  # sent, by status
    junk: int = 0  # datagrams (or TCP frames) that are not SIP
    oversize: int = 0  # over max_message_bytes
    keepalives: int = 0
    retransmissions: int = 0
    stray: int = 0  # responses and ACKs that match nothing
    calls: int = 0  # answered with 200
    byes_sent: int = 0
    tcp_errors: int = 0


def transaction_id(req: SipRequest) -> str:
    """The top Via branch (RFC 3261); for RFC 2543 peers without the magic cookie, the
    request's identity instead (§17.2.3)."""
    branch = req.branch
    if branch and branch.startswith("z9hG4bK"):
        return branch
    n, _ = req.cseq
    return f"{req.call_id}|{n}|{req.from_tag}|{req.headers.get('Via')}"


@dataclass
class Peer:
    """Where a message came from and how to reach it again: a UDP socket, or one TCP connection."""

    ip: str
    port: int
    transport: str  # "UDP" or "TCP"
    write: Callable[[bytes, tuple[str, int]], None]

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    def send(self, data: bytes, target: tuple[str, int] | None = None) -> None:
        try:
            self.write(data, target or (self.ip, self.port))
        except (
            OSError,
            RuntimeError,
        ) as exc:  # peer gone, socket closed: the transaction times out
            log.debug("send to %s:%d failed: %s", self.ip, self.port, exc)


@dataclass
class Transaction:
    key: tuple[str, str]
    peer: Peer
    target: tuple[str, int]
    created: float
    response: bytes | None = None
    status: int = 0
    acked: bool = False
    owner: Any = None  # the SipCall an INVITE transaction belongs to (for CANCEL)
    request: SipRequest | None = field(default=None, repr=False)  # to build a 487 on CANCEL
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        return self.status >= 200


class Transactions:
    """Server transactions by (branch, method); see the module docstring."""

    def __init__(self, limit: int, on_unacked: Callable[[Transaction], None]) -> None:
        self.limit = limit
        self.on_unacked = on_unacked
        self.items: dict[tuple[str, str], Transaction] = {}
        self.resent = 0  # our responses sent again by timer (no ACK yet)
        self._requests: dict[str, asyncio.TimerHandle] = {}  # our BYEs, by branch

    def send_request(self, peer: Peer, branch: str, data: bytes) -> None:
        """A request of ours (BYE): over UDP resent on T1 doubling until any response."""
        peer.send(data)
        if peer.reliable:
            return
        loop = asyncio.get_running_loop()

        def again(n: int) -> None:
            if branch in self._requests and n < REQUEST_SENDS:
                peer.send(data)
                self._requests[branch] = loop.call_later(T1 * 2**n, again, n + 1)
            else:
                self._requests.pop(branch, None)

        self._requests[branch] = loop.call_later(T1, again, 1)

    def answered(self, branch: str) -> bool:
        """A response to one of our requests: stop resending it. False if it is not ours."""
        handle = self._requests.pop(branch, None)
        if handle is not None:
            handle.cancel()
        return handle is not None

    def get(self, key: tuple[str, str]) -> Transaction | None:
        return self.items.get(key)

    def new(
        self, key: tuple[str, str], peer: Peer, target: tuple[str, int], request: SipRequest
    ) -> Transaction:
        while len(self.items) >= self.limit:  # the oldest goes first (dicts keep insertion order)
            self._drop(next(iter(self.items)))
        tx = Transaction(key, peer, target, time.monotonic(), request=request)
        self.items[key] = tx
        return tx

    def respond(self, tx: Transaction, data: bytes, status: int) -> None:
        """Send a response and remember it for retransmitted requests."""
        if tx.final:
            return  # a CANCEL's 487 already went out; the late 200 must not follow it
        tx.response, tx.status = data, status
        tx.peer.send(data, tx.target)
        if status >= 200:
            tx.created = time.monotonic()
            if tx.key[1] == "INVITE" and not tx.peer.reliable:
                loop = asyncio.get_running_loop()
                tx.timer = loop.call_later(T1, self._resend, tx, T1, loop.time())

    def repeat(self, tx: Transaction) -> None:
        """A retransmitted request: the same response again (nothing, while none is sent)."""
        if tx.response is not None:
            tx.peer.send(tx.response, tx.target)

    def ack(self, tx: Transaction) -> None:
        tx.acked = True
        if tx.timer is not None:
            tx.timer.cancel()
            tx.timer = None

    def _resend(self, tx: Transaction, interval: float, started: float) -> None:
        tx.timer = None
        if tx.acked or tx.response is None or self.items.get(tx.key) is not tx:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - started >= TRANSACTION_S:
            self.on_unacked(tx)
            return
        self.resent += 1
        tx.peer.send(tx.response, tx.target)
        interval = min(2 * interval, T2)
        tx.timer = loop.call_later(interval, self._resend, tx, interval, started)

    def expire(self, now: float) -> None:
        old = [
            k
            for k, tx in self.items.items()
            if now - tx.created > TRANSACTION_S
            and (tx.final or now - tx.created > 4 * TRANSACTION_S)
        ]
        for key in old:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        tx = self.items.pop(key)
        if tx.timer is not None:
            tx.timer.cancel()

    def close(self) -> None:
        for key in list(self.items):
            self._drop(key)
        for handle in self._requests.values():
            handle.cancel()
        self._requests.clear()


Handler = Callable[[bytes, Peer], None]


class SipUdp(asyncio.DatagramProtocol):
    """Hands every datagram to the source's handler with a :class:`Peer` that answers by UDP."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.handler(data, Peer(str(addr[0]), int(addr[1]), "UDP", self._sendto))

    def _sendto(self, data: bytes, target: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, target)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable for a response
        log.debug("SIP UDP: %s", exc)


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

        def write(data: bytes, _target: tuple[str, int]) -> None:
            if not writer.is_closing():
                writer.write(data)

        peer = Peer(str(addr[0]), int(addr[1]), "TCP", write)
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


_HEADER = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*:.*")
_START = re.compile(
    rb"[\r\n]*(?:SIP/2\.0 [1-6][0-9][0-9]|[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,31} [^ \r\n]+ SIP/2\.0\r?\n)",
    re.I,
)


def looks_like_sip(data: bytes) -> bool:
    """A start line (RFC 3261 §7.1/§7.2) at the start: the one check worth making on junk."""
    return _START.match(data, 0, 512) is not None


def phrase(text: str, limit: int = 120) -> str:
    """A reason phrase from an error message: printable ASCII only (never a CR or LF)."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def salvage(data: bytes) -> SipRequest | None:
    """A request that failed to parse, rebuilt from its well-formed header lines (body dropped),
    so it can be answered with 400 and the reason; None when not even that works."""
    if not looks_like_sip(data) or data.lstrip(b"\r\n").startswith(b"SIP/"):
        return None
    head = re.split(rb"\r?\n\r?\n", data.lstrip(b"\r\n"), maxsplit=1)[0]
    lines = head.decode("utf-8", "replace").splitlines()
    if not lines:
        return None
    keep = [lines[0]] + [
        line
        for line in lines[1:]
        if _HEADER.fullmatch(line)
        and line.split(":", 1)[0].strip().lower() not in ("content-length", "l")
    ]
    try:
        message = parse_message(("\r\n".join(keep) + "\r\n\r\n").encode())
        if not isinstance(message, SipRequest) or message.method.upper() == "ACK":
            return None
        build_response(message, 400)  # raises when Via, From, To, Call-ID or CSeq are unusable
    except (SipError, ValueError):
        return None
    return message
