"""The UAS core (RFC 3261 §8.2), sans-I/O: what every request goes through before its method.

A message is screened (size, keep-alive, then ``allow_from`` on the source address *before any
parsing*), parsed, matched to its transaction (:mod:`streamd.protocols.sip.transaction`:
retransmissions get the last response again) and handed to the subclass's ``_on_<method>``.
Strangers (outside ``allow_from``) create no state: a small request of theirs gets a stateless
403 (at most ``STRANGER_REPLIES_PER_S``, so we are no reflector), anything else is counted
``refused`` and dropped unparsed; requests nobody
handles get 481 (PRACK), 405 or 501. Malformed requests from allowed sources get a 400 that says
why; responses go to our own client transactions. Everything comes out as actions
(:class:`Send`, :class:`Log`, and the call actions :class:`~streamd.protocols.sip.uas.Uas`
adds), never as I/O.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from streamd import __version__
from streamd.protocols.sip.dialog import ALLOW, Call
from streamd.protocols.sip.malformed import looks_like_sip, phrase, salvage
from streamd.protocols.sip.message import (
    SipError,
    SipRequest,
    SipResponse,
    build_response,
    is_keepalive,
    parse_message,
)
from streamd.protocols.sip.sdp import SessionDescription
from streamd.protocols.sip.siprec import RecordingMetadata
from streamd.protocols.sip.transaction import (
    Key,
    Peer,
    Send,
    ServerTransaction,
    Transactions,
    transaction_id,
)

REFUSED_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"})
KNOWN_METHODS = REFUSED_METHODS | {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE"}
KNOWN_METHODS |= {"INFO", "PRACK"}
SERVER = f"streamd/{__version__}"
STRANGER_PARSE_BYTES = 4096  # a stranger's message larger than this is never parsed
STRANGER_REPLIES_PER_S = 20.0  # stateless 403s, all strangers together (burst: one second's)


@dataclass(frozen=True, eq=False)
class Negotiate:
    """Answer ``offer`` for ``call`` (bind ports, open or retune streams), then report back with
    :meth:`~streamd.protocols.sip.uas.Uas.negotiated`. ``initial``: the call's first offer."""

    call: Call
    offer: SessionDescription
    metadata: RecordingMetadata | None
    initial: bool


@dataclass(frozen=True, eq=False)
class UpdateMetadata:
    """SIPREC metadata without a new offer: it names streams added later."""

    call: Call
    metadata: RecordingMetadata


@dataclass(frozen=True, eq=False)
class Forget:
    """The call is gone before it had media (CANCEL, a failed first offer): stop answering."""

    call: Call


@dataclass(frozen=True, eq=False)
class EndCall:
    """End the call's streams (buffered audio is scored first)."""

    call: Call
    reason: str


@dataclass(frozen=True)
class Log:
    """A line for the adapter's log; warnings go through its rate limit."""

    level: Literal["warning", "info", "error"]
    msg: str
    args: tuple[object, ...] = ()
    exc: BaseException | None = None  # an "error" carries what went wrong, for the traceback


Action = Send | Negotiate | UpdateMetadata | Forget | EndCall | Log


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
    refused: int = 0  # messages from outside allow_from (403 or dropped; no state either way)
    refused_unanswered: int = 0  # of those, dropped unparsed (too big, over the 403 rate)
    over_source_calls: int = 0  # INVITEs over max_calls_per_source (486)
    too_many_media: int = 0  # offers with more than max_media_per_call m-lines (488)
    auth_challenges: int = 0  # 401s sent (digest auth)
    auth_failures: int = 0  # credentials that did not verify (wrong password, replayed nc)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; time passed in."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class UasCore:
    """Screening, transactions, dispatch and responses; the methods are the subclass's.
    ``allowed`` and ``local_ip`` are the adapter's policies (the ``allow_from`` check, the
    address to advertise to a peer); both are plain lookups."""

    def __init__(
        self,
        *,
        port: int,
        max_message_bytes: int,
        max_transactions: int,
        allowed: Callable[[str], bool],
        local_ip: Callable[[str], str],
    ) -> None:
        self.port = port
        self.tls_port: int | None = None  # set by the adapter when it listens for TLS
        self.max_message_bytes = max_message_bytes
        self.allowed = allowed
        self.local_ip = local_ip
        self.counters = SipCounters()
        self.transactions = Transactions(max_transactions)
        self._out: list[Action] = []
        self._now = 0.0
        self._stranger_replies = TokenBucket(STRANGER_REPLIES_PER_S, STRANGER_REPLIES_PER_S)

    def receive(self, data: bytes, peer: Peer, now: float) -> list[Action]:
        """One datagram or TCP frame from ``peer``."""
        self._now = now
        try:
            self._handle(data, peer)
        except Exception as exc:  # one bad message must never take the listener down
            where = (peer.ip, peer.port)
            self._out.append(Log("error", "SIP message from %s:%d not handled", where, exc))
        return self._flush()

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _warn(self, msg: str, *args: object) -> None:
        self._out.append(Log("warning", msg, args))

    def _handle(self, data: bytes, peer: Peer) -> None:
        c = self.counters
        if len(data) > self.max_message_bytes:
            c.oversize += 1
            where = (peer.ip, peer.port, len(data))
            self._warn("SIP %s:%d: %d-byte message over max_message_bytes: dropped", *where)
            return
        if is_keepalive(data):
            c.keepalives += 1
            return
        if not self.allowed(peer.ip):  # before any parsing: strangers' bytes cost a lookup
            self._stranger(data, peer)
            return
        if not looks_like_sip(data):  # a flood of random datagrams must stay cheap
            c.junk += 1
            where = (peer.ip, peer.port, len(data))
            self._warn("SIP %s:%d: %d-byte datagram that is not SIP: dropped", *where)
            return
        try:
            message = parse_message(data, max_size=self.max_message_bytes)
            if isinstance(message, SipResponse):
                self._response(message)
                return
            method = message.method.upper()
            key = (transaction_id(message), "INVITE" if method == "ACK" else method)
            message.to  # noqa: B018 - checks To, as transaction_id checked Via, Call-ID, CSeq and From
            target = message.vias[0].response_target(peer.ip, peer.port)
            if message.cseq[1].upper() != method:
                raise SipError(f"CSeq method {message.cseq[1]} is not {method}")
        except SipError as exc:
            self._malformed(data, peer, exc)
            return
        c.requests[method if method in KNOWN_METHODS else "other"] += 1  # bounded: peer input
        if method == "ACK":
            self._ack(message, key)
            return
        tx, again = self.transactions.receive(message, key, peer, target, self._now)
        if tx is None:
            c.retransmissions += 1
            self._out.extend(again)
            return
        if message.uri.lower().startswith("sips:") and peer.transport != "TLS":
            self._reply(tx, 416, "Unsupported URI Scheme (sips: is only served over TLS)")
            return
        handler = getattr(self, f"_on_{method.lower()}", None)
        if handler is not None:
            handler(tx, message)
        elif method == "PRACK":
            self._reply(tx, 481)
        elif method in REFUSED_METHODS:
            self._reply(tx, 405, headers=[("Allow", ALLOW)])
        else:
            self._reply(tx, 501, headers=[("Allow", ALLOW)])

    def _stranger(self, data: bytes, peer: Peer) -> None:
        """A message from outside ``allow_from``: a stateless 403 when it is small and the reply
        budget allows, else dropped unparsed. No transaction, no call, nothing kept."""
        c = self.counters
        c.refused += 1
        peer_at = (peer.ip, peer.port)
        message: SipRequest | SipResponse | None = None
        if (
            len(data) <= STRANGER_PARSE_BYTES
            and looks_like_sip(data)
            and self._stranger_replies.take(self._now)
        ):
            try:
                message = parse_message(data, max_size=STRANGER_PARSE_BYTES)
                if isinstance(message, SipRequest) and message.method.upper() != "ACK":
                    target = message.vias[0].response_target(peer.ip, peer.port)
                    reason = "Forbidden (source not in allow_from)"
                    reply = self._build(message, peer, 403, reason, None)
                    self._warn(
                        "SIP %s from %s:%d: not in allow_from: 403", message.method, *peer_at
                    )
                    self._out.append(Send(peer, reply, target))
                    return
            except (SipError, IndexError):
                pass
        c.refused_unanswered += 1
        self._warn(
            "SIP %s:%d: %d bytes from outside allow_from: dropped unparsed", *peer_at, len(data)
        )

    def _malformed(self, data: bytes, peer: Peer, exc: SipError) -> None:
        self.counters.junk += 1
        self._warn("SIP %s:%d: malformed message (%s)", peer.ip, peer.port, exc)
        request = salvage(data)  # only allowed peers get here: strangers' junk is never answered
        if request is None:
            return
        try:
            target = request.vias[0].response_target(peer.ip, peer.port)
            reason = f"Bad Request ({phrase(str(exc))})"
            self._out.append(Send(peer, self._build(request, peer, 400, reason, None), target))
        except (SipError, IndexError):
            return

    def _response(self, response: SipResponse) -> None:
        try:
            if self.transactions.receive_response(
                response.branch or "", response.status, self._now
            ):
                return
        except SipError:
            pass
        self.counters.stray += 1

    def _build(
        self,
        request: SipRequest,
        peer: Peer,
        status: int,
        reason: str | None,
        to_tag: str | None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> bytes:
        if to_tag is None and status > 100:
            to_tag = secrets.token_hex(6)
        self.counters.responses[status] += 1
        return build_response(
            request,
            status,
            reason,
            to_tag=to_tag if status > 100 else None,
            headers=[*(headers or []), ("Server", SERVER)],
            body=body,
            content_type=content_type,
            source=(peer.ip, peer.port),
        ).to_bytes()

    def _reply(
        self,
        tx: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Answer ``tx`` (once: a transaction's final response is never replaced)."""
        if tx.final:
            return
        owner = tx.owner
        to_tag = owner.dialog.local_tag if isinstance(owner, Call) else None
        data = self._build(tx.request, tx.peer, status, reason, to_tag, headers, body, content_type)
        self._out.extend(self.transactions.respond(tx, data, status, self._now))

    def _contact(self, peer: Peer) -> str:
        ip = self.local_ip(peer.ip)
        host = f"[{ip}]" if ":" in ip else ip
        if peer.transport == "TLS" and self.tls_port is not None:
            return f"<sips:streamd@{host}:{self.tls_port};transport=tls>"
        return f"<sip:streamd@{host}:{self.port};transport={peer.transport.lower()}>"

    def _ack(self, req: SipRequest, key: Key) -> None:
        """An ACK that no transaction absorbed: the subclass's (a 2xx's ACK is in the dialog)."""
        raise NotImplementedError
