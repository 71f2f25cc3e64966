"""RFC 3261 §17 transactions, sans-I/O: requests and timer firings in, bytes to send out.

Server side (§17.2), keyed by the top Via branch and the method (the ACK for a non-2xx final
and a CANCEL carry the INVITE's branch, so they find it):

- INVITE: *proceeding* until the TU answers. A non-2xx final goes *completed*: over UDP it is
  resent on T1 doubling up to T2 (Timer G) until the ACK, which moves it to *confirmed* for
  Timer I (T4 over UDP, 0 over TCP); with no ACK it ends at Timer H (64*T1). A 2xx goes
  *accepted* (RFC 6026): over UDP it is resent on the same schedule until the TU says the ACK
  came (§13.3.1.4); at Timer L (64*T1) it ends, and an un-ACKed 2xx is reported
  (:class:`Unacked`) so the TU can end the call.
- non-INVITE: *trying*, *proceeding* after a 1xx, *completed* after the final response for
  Timer J (64*T1 over UDP, 0 over TCP).

A retransmitted request gets the last response again and is never given to the TU twice. Over
TCP nothing is resent. A transaction the TU never answers is dropped after 4*64*T1, and the
table is bounded (oldest first), so a flood of distinct branches cannot grow it.

Client side (§17.1.2), for the only requests streamd sends (a BYE): over UDP resent on T1
doubling up to T2 (Timer E; every T2 after a 1xx) until a final response, which is kept T4
(Timer K, 0 over TCP) to absorb its retransmissions; no final response by 64*T1 is Timer F
(:class:`RequestTimeout`). streamd never sends INVITE, so Timers A, B and D have no user.

Time is always passed in (``now``, seconds on any monotonic clock); :meth:`Transactions.deadline`
says when :meth:`Transactions.handle_timeout` wants to be called next.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from streamd.protocols.sip.message import SipRequest

T1 = 0.5
T2 = 4.0
T4 = 5.0
TIMEOUT = 64 * T1  # Timers B, F, H, L and J over UDP
STALE = 4 * TIMEOUT  # a transaction the TU never answers is dropped after this

Key = tuple[str, str]  # (branch or RFC 2543 identity, method; ACK counts as INVITE)


def transaction_id(req: SipRequest) -> str:
    """The top Via branch (RFC 3261); for RFC 2543 peers without the magic cookie, the
    request's identity instead (§17.2.3)."""
    branch = req.branch
    if branch and branch.startswith("z9hG4bK"):
        return branch
    n, _ = req.cseq
    return f"{req.call_id}|{n}|{req.from_tag}|{req.headers.get('Via')}"


@dataclass(frozen=True, eq=False)
class Peer:
    """Where a message came from and how to answer: ``channel`` is the adapter's handle (a TCP
    connection; None for the UDP socket), never looked at here."""

    ip: str
    port: int
    transport: str  # "UDP" or "TCP"
    channel: object = None

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


@dataclass(frozen=True)
class Send:
    """Put ``data`` on the wire to ``target`` through ``peer``'s transport."""

    peer: Peer
    data: bytes
    target: tuple[str, int]


@dataclass(frozen=True, eq=False)
class Unacked:
    """Our 2xx to this INVITE got no ACK within 64*T1: the TU should end the call."""

    tx: ServerTransaction


@dataclass(frozen=True)
class RequestTimeout:
    """Timer F: our request (by branch) got no final response within 64*T1."""

    branch: str


@dataclass(frozen=True)
class Terminated:
    """A transaction left the table (its key; a client transaction's method is ``BYE``)."""

    key: Key


Event = Send | Unacked | RequestTimeout | Terminated


@dataclass(eq=False)
class ServerTransaction:
    key: Key
    peer: Peer
    target: tuple[str, int]
    request: SipRequest = field(repr=False)
    created: float
    state: str = "proceeding"  # INVITE: proceeding, completed, confirmed, accepted
    response: bytes | None = field(default=None, repr=False)
    status: int = 0
    acked: bool = False
    final_at: float | None = None
    resend_at: float | None = None
    interval: float = T1
    end_at: float = 0.0
    owner: object = None  # the TU's (the UAS's call an INVITE belongs to)

    @property
    def invite(self) -> bool:
        return self.key[1] == "INVITE"

    @property
    def final(self) -> bool:
        return self.status >= 200

    @property
    def due(self) -> float:
        return self.end_at if self.resend_at is None else min(self.resend_at, self.end_at)


@dataclass(eq=False)
class ClientTransaction:
    branch: str
    peer: Peer
    data: bytes = field(repr=False)
    state: str = "trying"  # trying, proceeding, completed
    interval: float = T1
    resend_at: float | None = None
    end_at: float = 0.0

    @property
    def due(self) -> float:
        return self.end_at if self.resend_at is None else min(self.resend_at, self.end_at)


class Transactions:
    """The server and client transaction tables; see the module docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: dict[Key, ServerTransaction] = {}
        self.clients: dict[str, ClientTransaction] = {}  # ours, by branch
        self.resent = 0  # responses and requests sent again by timer
        self._heap: list[tuple[float, int, ServerTransaction | ClientTransaction]] = []
        self._seq = itertools.count()

    # -- server side ----------------------------------------------------------------------------

    def get(self, key: Key) -> ServerTransaction | None:
        return self.items.get(key)

    def receive(
        self, request: SipRequest, key: Key, peer: Peer, target: tuple[str, int], now: float
    ) -> tuple[ServerTransaction | None, list[Send]]:
        """A request other than ACK: (its new transaction, for the TU; nothing to send), or for
        a retransmission (None; the last response again, nothing while none was sent)."""
        tx = self.items.get(key)
        if tx is not None:
            return None, [] if tx.response is None else [Send(tx.peer, tx.response, tx.target)]
        tx = ServerTransaction(key, peer, target, request, now, end_at=now + STALE)
        if not tx.invite:
            tx.state = "trying"
        self._insert(tx)
        return tx, []

    def _insert(self, tx: ServerTransaction) -> None:
        while len(self.items) >= self.limit:  # the oldest goes first (dicts keep insertion order)
            del self.items[next(iter(self.items))]
        self.items[tx.key] = tx
        self._schedule(tx)

    def receive_ack(self, key: Key, now: float) -> bool:
        """True when the ACK belongs to an INVITE transaction whose final was a non-2xx (it is
        absorbed there); False when it is for the TU (the ACK to a 2xx is its own request)."""
        tx = self.items.get(key)
        if tx is None or tx.status < 300:
            return False
        if tx.state == "completed":
            tx.state, tx.acked, tx.resend_at = "confirmed", True, None
            tx.end_at = now + (0.0 if tx.peer.reliable else T4)  # Timer I
            self._schedule(tx)
        return True

    def respond(self, tx: ServerTransaction, data: bytes, status: int, now: float) -> list[Send]:
        """Send a response and remember it for retransmitted requests. Nothing once a final
        one went out: a CANCEL's 487 must not be followed by a late 200."""
        if tx.final:
            return []
        tx.response, tx.status = data, status
        if status >= 200:
            tx.final_at = now
            tx.end_at = now + TIMEOUT  # Timers H and L; J over UDP
            if tx.invite:
                tx.state = "accepted" if status < 300 else "completed"
                if not tx.peer.reliable:  # Timer G, and §13.3.1.4 for the 2xx
                    tx.resend_at, tx.interval = now + T1, T1
            else:
                tx.state = "completed"
                if tx.peer.reliable:
                    tx.end_at = now  # Timer J is 0 over TCP
            if tx.key not in self.items:  # dropped (stale, or the bound) while the TU answered
                self._insert(tx)
            elif self.items[tx.key] is tx:
                self._schedule(tx)
        elif tx.state == "trying":
            tx.state = "proceeding"
        return [Send(tx.peer, data, tx.target)]

    def acked(self, tx: ServerTransaction) -> None:
        """The TU saw the ACK to its 2xx (or ended the call): no more retransmissions."""
        tx.acked = True
        if tx.resend_at is not None:
            tx.resend_at = None
            if self.items.get(tx.key) is tx:
                self._schedule(tx)

    # -- client side ----------------------------------------------------------------------------

    def send_request(self, peer: Peer, branch: str, data: bytes, now: float) -> list[Send]:
        """A request of ours (BYE, a non-INVITE client transaction)."""
        if len(self.clients) >= self.limit:
            del self.clients[next(iter(self.clients))]
        ctx = ClientTransaction(branch, peer, data, end_at=now + TIMEOUT)  # Timer F
        if not peer.reliable:
            ctx.resend_at = now + T1  # Timer E
        self.clients[branch] = ctx
        self._schedule(ctx)
        return [Send(peer, data, (peer.ip, peer.port))]

    def receive_response(self, branch: str, status: int, now: float) -> bool:
        """A response to one of our requests: stop resending it. False if it is not ours."""
        ctx = self.clients.get(branch)
        if ctx is None:
            return False
        if ctx.state == "completed":
            return True  # a retransmitted final response, absorbed (Timer K)
        if status < 200:
            ctx.state = "proceeding"
            if ctx.resend_at is not None:
                ctx.resend_at, ctx.interval = now + T2, T2
        else:
            ctx.state, ctx.resend_at = "completed", None
            ctx.end_at = now + (0.0 if ctx.peer.reliable else T4)  # Timer K
        self._schedule(ctx)
        return True

    # -- time ----------------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`handle_timeout` has something to do next (None: nothing pending)."""
        heap = self._heap
        while heap and not self._current(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timeout(self, now: float) -> list[Event]:
        """Fire every timer due by ``now``: retransmissions, timeouts, terminations."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, item = heapq.heappop(heap)
            if not self._current(when, item):
                continue
            if isinstance(item, ServerTransaction):
                events.extend(self._fire_server(item, now))
            else:
                events.extend(self._fire_client(item, now))
        return events

    def _fire_server(self, tx: ServerTransaction, now: float) -> list[Event]:
        if tx.end_at <= now:
            del self.items[tx.key]
            tx.resend_at = None
            if tx.invite and 200 <= tx.status < 300 and not tx.acked:
                return [Unacked(tx), Terminated(tx.key)]
            return [Terminated(tx.key)]
        assert tx.response is not None and tx.resend_at is not None
        self.resent += 1
        tx.interval = min(2 * tx.interval, T2)
        tx.resend_at = now + tx.interval
        self._schedule(tx)
        return [Send(tx.peer, tx.response, tx.target)]

    def _fire_client(self, ctx: ClientTransaction, now: float) -> list[Event]:
        if ctx.end_at <= now:
            del self.clients[ctx.branch]
            ctx.resend_at = None
            out: list[Event] = [Terminated((ctx.branch, "BYE"))]
            return out if ctx.state == "completed" else [RequestTimeout(ctx.branch), *out]
        self.resent += 1
        if ctx.state == "trying":
            ctx.interval = min(2 * ctx.interval, T2)
        ctx.resend_at = now + ctx.interval
        self._schedule(ctx)
        return [Send(ctx.peer, ctx.data, (ctx.peer.ip, ctx.peer.port))]

    def _current(self, when: float, item: ServerTransaction | ClientTransaction) -> bool:
        """A heap entry still stands for its transaction's next timer (the others are stale)."""
        if isinstance(item, ServerTransaction):
            live = self.items.get(item.key) is item
        else:
            live = self.clients.get(item.branch) is item
        return live and item.due == when

    def _schedule(self, item: ServerTransaction | ClientTransaction) -> None:
        heapq.heappush(self._heap, (item.due, next(self._seq), item))
        if len(self._heap) > 4 * (len(self.items) + len(self.clients)) + 64:
            # stale entries of dropped or rescheduled transactions: keep memory bounded
            live: list[ServerTransaction | ClientTransaction] = [*self.items.values()]
            live.extend(self.clients.values())
            self._heap = [(t.due, next(self._seq), t) for t in live]
            heapq.heapify(self._heap)

    def close(self) -> None:
        self.items.clear()
        self.clients.clear()
        self._heap.clear()
