"""The SIP user agent server: requests in, responses out, calls set up and torn down.

Transport-free apart from :class:`Peer` (how to answer): :class:`~streamd.ingest.sip.server.SipSource`
owns the sockets and hands every message to :meth:`SipUas.handle`. What it answers:

- ``OPTIONS`` 200 (503 while stopping), so SBC keep-alives see the recorder up or draining.
- ``INVITE`` 100 Trying, then 200 OK with a ``recvonly`` SDP answer; with ``answer_delay_ms`` a
  180 Ringing and a wait first. ``ACK``; ``BYE`` 200 and the call's streams end (buffered
  audio is scored first); ``CANCEL`` before the answer 200, and 487 to the INVITE.
- re-INVITE and ``UPDATE`` in the dialog: hold/resume, codec change, added or removed m-lines,
  SIPREC metadata updates; 491 while another offer is being answered; a re-INVITE without a
  body (session refresh) gets the current answer again. ``INFO`` 200.
- 403 from outside ``allow_from``; 486 over ``max_calls``; 503 while stopping or over
  ``sources.max_streams``; 488 when no m-line has a usable codec (or no offer); 420 for a
  ``Require`` other than ``siprec``; 415 for bodies we cannot read; 400 with the reason for
  malformed requests (rebuilt from their good header lines when possible, and only for sources
  in ``allow_from``: junk from strangers is counted, never answered); 481 for unknown dialogs;
  405 for REGISTER, SUBSCRIBE and the like; 501 for unknown methods.

We send requests of our own only to end a call: a BYE when every stream of it timed out
(``rtp_timeout_s``), when our 2xx was never ACKed, and on shutdown. It goes to the address the
INVITE came from (over UDP, resent on T1 a few times), or over the INVITE's TCP connection,
which is where an SBC or PBX expects it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from streamd import __version__
from streamd.errors import ProtocolError
from streamd.ingest.sip.call import (
    ACCEPT,
    ALLOW,
    Cancelled,
    Dialog,
    MediaContext,
    Rejected,
    SipCall,
    check_require,
    read_offer,
)
from streamd.ingest.sip.transport import (
    Peer,
    SipCounters,
    Transaction,
    Transactions,
    looks_like_sip,
    phrase,
    salvage,
    transaction_id,
)
from streamd.protocols.sip.message import (
    SipError,
    SipRequest,
    SipResponse,
    build_response,
    is_keepalive,
    parse_message,
)

if TYPE_CHECKING:
    from streamd.config import SipConfig
    from streamd.protocols.sip.sdp import SessionDescription
    from streamd.protocols.sip.siprec import RecordingMetadata

log = logging.getLogger("streamd.ingest.sip.server")

REFUSED_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"})
KNOWN_METHODS = REFUSED_METHODS | {
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "UPDATE",
    "INFO",
    "PRACK",
}
SERVER = f"streamd/{__version__}"
ANSWERING = "sip-answer"


class SipUas:
    def __init__(self, cfg: SipConfig, ctx: MediaContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.local_ip = ctx.local_ip
        self.port = cfg.port
        self.accepting = False
        self.counters = SipCounters()
        self.calls: dict[str, SipCall] = {}
        self.transactions = Transactions(max(1024, 8 * cfg.max_calls), self._unacked)
        self.tasks: set[asyncio.Task[Any]] = set()

    def allowed(self, ip: str) -> bool:
        return self.ctx.allowed(ip)

    def warn(self, msg: str, *args: object) -> None:
        self.ctx.warn(msg, *args)

    def _spawn(self, coro: Any, name: str = "sip-end") -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- incoming messages ---------------------------------------------------------------------

    def handle(self, data: bytes, peer: Peer) -> None:
        try:
            self._handle(data, peer)
        except Exception:  # one bad message must never take the listener down
            log.exception("SIP message from %s:%d not handled", peer.ip, peer.port)

    def _handle(self, data: bytes, peer: Peer) -> None:
        c = self.counters
        if len(data) > self.cfg.max_message_bytes:
            c.oversize += 1
            self.warn(
                "SIP %s:%d: %d-byte message over max_message_bytes: dropped",
                peer.ip,
                peer.port,
                len(data),
            )
            return
        if is_keepalive(data):
            c.keepalives += 1
            return
        if not looks_like_sip(data):  # a flood of random datagrams must stay cheap
            c.junk += 1
            self.warn(
                "SIP %s:%d: %d-byte datagram that is not SIP: dropped",
                peer.ip,
                peer.port,
                len(data),
            )
            return
        try:
            message = parse_message(data, max_size=self.cfg.max_message_bytes)
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
        c.requests[method if method in KNOWN_METHODS else "other"] += (
            1  # bounded: methods are peer input
        )
        if method == "ACK":
            self._ack(message, key)
            return
        tx = self.transactions.get(key)
        if tx is not None:
            c.retransmissions += 1
            self.transactions.repeat(tx)
            return
        tx = self.transactions.new(key, peer, target, message)
        if not self.allowed(peer.ip):
            self.warn("SIP %s from %s:%d: not in allow_from: 403", method, peer.ip, peer.port)
            self._reply(tx, 403, "Forbidden (source not in allow_from)")
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

    def _malformed(self, data: bytes, peer: Peer, exc: ProtocolError) -> None:
        self.counters.junk += 1
        self.warn("SIP %s:%d: malformed message (%s)", peer.ip, peer.port, exc)
        request = salvage(data) if self.allowed(peer.ip) else None  # no answers to strangers' junk
        if request is not None:
            with contextlib.suppress(SipError, IndexError):
                target = request.vias[0].response_target(peer.ip, peer.port)
                tx = Transaction(("", ""), peer, target, time.monotonic(), request=request)
                self._reply(tx, 400, f"Bad Request ({phrase(str(exc))})")

    def _response(self, response: SipResponse) -> None:
        with contextlib.suppress(SipError):
            if self.transactions.answered(response.branch or ""):
                return
        self.counters.stray += 1

    def _reply(
        self,
        tx: Transaction,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """Answer ``tx`` (once: a transaction's final response is never replaced)."""
        if tx.final or tx.request is None:
            return
        if to_tag is None and status > 100:
            owner = tx.owner
            to_tag = owner.dialog.local_tag if isinstance(owner, SipCall) else secrets.token_hex(6)
        response = build_response(
            tx.request,
            status,
            reason,
            to_tag=to_tag if status > 100 else None,
            headers=[*(headers or []), ("Server", SERVER)],
            body=body,
            content_type=content_type,
            source=(tx.peer.ip, tx.peer.port),
        )
        self.counters.responses[status] += 1
        self.transactions.respond(tx, response.to_bytes(), status)

    def _contact(self, peer: Peer) -> str:
        ip = self.local_ip(peer.ip)
        host = f"[{ip}]" if ":" in ip else ip
        return f"<sip:streamd@{host}:{self.port};transport={peer.transport.lower()}>"

    def _dialog(self, req: SipRequest) -> SipCall | None:
        call = self.calls.get(req.call_id)
        if call is None or req.to_tag != call.dialog.local_tag:
            return None
        if call.dialog.remote_tag is not None and req.from_tag != call.dialog.remote_tag:
            return None
        return call

    def _in_dialog(self, tx: Transaction, req: SipRequest) -> SipCall | None:
        """The request's call, its CSeq checked; None once answered 481 or 500."""
        call = self._dialog(req)
        if call is None:
            self._reply(tx, 481, "Call/Transaction Does Not Exist")
            return None
        number = req.cseq[0]
        if number <= call.dialog.remote_cseq:
            self._reply(tx, 500, "Server Internal Error (CSeq out of order)")
            return None
        call.dialog.remote_cseq = number
        tx.owner = call
        return call

    # -- methods -------------------------------------------------------------------------------

    def _on_options(self, tx: Transaction, req: SipRequest) -> None:
        status = 200 if self.accepting else 503
        self._reply(
            tx,
            status,
            headers=[
                ("Allow", ALLOW),
                ("Accept", ACCEPT),
                ("Supported", "siprec"),
                ("Contact", self._contact(tx.peer)),
            ],
        )

    def _on_info(self, tx: Transaction, req: SipRequest) -> None:
        if self._in_dialog(tx, req) is not None:
            self._reply(tx, 200)

    def _on_bye(self, tx: Transaction, req: SipRequest) -> None:
        call = self._in_dialog(tx, req)
        if call is not None:
            self._reply(tx, 200)
            log.info("call %s: BYE from %s:%d", call.call_id, tx.peer.ip, tx.peer.port)
            self._end_call(call, "bye")

    def _on_cancel(self, tx: Transaction, req: SipRequest) -> None:
        invite = self.transactions.get((tx.key[0], "INVITE"))
        if invite is None:
            self._reply(tx, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(tx, 200)
        call = invite.owner
        if invite.final or not isinstance(call, SipCall):
            return  # already answered: the CANCEL has no effect (the caller will BYE)
        call.cancelled = True
        self._reply(invite, 487)
        log.info("call %s: CANCELed before the answer", call.call_id)
        self._forget(call)

    def _on_invite(self, tx: Transaction, req: SipRequest) -> None:
        if req.to_tag is not None:
            call = self._in_dialog(tx, req)
            if call is not None:
                self._offer_in_dialog(tx, req, call)
            return
        if not self.accepting or self.ctx.hub is None:
            self._reply(
                tx, 503, "Service Unavailable (shutting down)", headers=[("Retry-After", "30")]
            )
            return
        if len(self.calls) >= self.cfg.max_calls:
            self.warn(
                "INVITE %s from %s: max_calls (%d) reached: 486",
                req.call_id,
                tx.peer.ip,
                self.cfg.max_calls,
            )
            self._reply(tx, 486, f"Busy Here (max_calls {self.cfg.max_calls} reached)")
            return
        if req.call_id in self.calls:
            self._reply(tx, 482, "Loop Detected")
            return
        try:
            check_require(req)
            offer, metadata = read_offer(req, initial=True)
        except Rejected as exc:
            self._reply_rejected(tx, exc)
            return
        assert offer is not None
        try:
            dialog = Dialog.of(req)
        except SipError as exc:
            self._reply(tx, 400, f"Bad Request ({phrase(str(exc))})")
            return
        call = SipCall(dialog, tx.peer, self.ctx, invite_tx=tx)
        tx.owner = call
        self.calls[call.call_id] = call
        self._reply(tx, 100)
        self._spawn(self._answer(tx, call, offer, metadata, initial=True), ANSWERING)

    def _on_update(self, tx: Transaction, req: SipRequest) -> None:
        call = self._in_dialog(tx, req)
        if call is not None:
            self._offer_in_dialog(tx, req, call)

    def _offer_in_dialog(self, tx: Transaction, req: SipRequest, call: SipCall) -> None:
        """re-INVITE or UPDATE: a new offer, metadata only, or (no body) a session refresh."""
        if call.negotiating:
            self._reply(tx, 491, headers=[("Retry-After", "1")])
            return
        try:
            check_require(req)
            offer, metadata = read_offer(req, initial=False)
        except Rejected as exc:
            self._reply_rejected(tx, exc)
            return
        if offer is None:
            if metadata is not None:
                call.metadata = call.metadata.merged(metadata) if call.metadata else metadata
            self._answered(tx, call, call.last_answer if req.method.upper() == "INVITE" else b"")
            return
        self._spawn(self._answer(tx, call, offer, metadata, initial=False), ANSWERING)

    def _reply_rejected(self, tx: Transaction, exc: Rejected) -> None:
        if exc.status >= 500 or exc.status == 488:
            self.warn(
                "SIP %s from %s:%d: %d %s",
                tx.key[1],
                tx.peer.ip,
                tx.peer.port,
                exc.status,
                exc.reason,
            )
        self._reply(tx, exc.status, exc.reason, headers=exc.headers)

    async def _answer(
        self,
        tx: Transaction,
        call: SipCall,
        offer: SessionDescription,
        metadata: RecordingMetadata | None,
        initial: bool,
    ) -> None:
        call.negotiating = True
        try:
            if initial and self.cfg.answer_delay_ms:
                self._reply(tx, 180)
                await asyncio.sleep(self.cfg.answer_delay_ms / 1000)
                if call.cancelled:
                    return
            answer = await call.negotiate(offer, metadata)
        except (Cancelled, asyncio.CancelledError):
            if not call.cancelled:
                raise
            return
        except Rejected as exc:
            self._reply_rejected(tx, exc)
            if initial:
                self._forget(call)
            return
        except Exception as exc:
            log.exception("call %s: answering the offer failed", call.call_id)
            self._reply(tx, 500, f"Server Internal Error ({phrase(str(exc), 60)})")
            if initial:
                self._forget(call)
            return
        finally:
            call.negotiating = False
        call.last_answer = answer.to_text().encode()
        self._answered(tx, call, call.last_answer)
        if initial:
            self.counters.calls += 1
            legs = [
                f"{r.stream.info.leg}:{r.codec_name}@{r.port}"
                for r in call.receivers.values()
                if r.stream
            ]
            log.info(
                "call %s from %s:%d answered: %s",
                call.call_id,
                tx.peer.ip,
                tx.peer.port,
                ", ".join(legs),
            )

    def _answered(self, tx: Transaction, call: SipCall, body: bytes) -> None:
        if tx.key[1] == "INVITE":
            call.invite_tx = tx
        self._reply(
            tx,
            200,
            headers=[
                ("Contact", self._contact(tx.peer)),
                ("Allow", ALLOW),
                ("Supported", "siprec"),
            ],
            body=body,
            content_type="application/sdp" if body else None,
        )

    def _ack(self, req: SipRequest, key: tuple[str, str]) -> None:
        tx = self.transactions.get(key)
        if tx is not None and tx.status >= 300:
            self.transactions.ack(tx)  # ACK of a non-2xx final: same transaction
            return
        call = self._dialog(req)
        if call is None:
            self.counters.stray += 1
            return
        if call.invite_tx is not None and req.cseq[0] == call.invite_tx.request.cseq[0]:  # type: ignore[union-attr]
            self.transactions.ack(call.invite_tx)
        if call.state == "proceeding":
            call.state = "confirmed"

    # -- ending calls --------------------------------------------------------------------------

    def _forget(self, call: SipCall) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]

    def _end_call(self, call: SipCall, reason: str, bye: bool = False) -> None:
        self._forget(call)
        if call.invite_tx is not None:
            self.transactions.ack(call.invite_tx)  # no more 2xx retransmissions
        if bye and call.sdp_version >= 0:
            self._send_bye(call)
        self._spawn(call.end(reason))

    def _send_bye(self, call: SipCall) -> None:
        branch, data = call.dialog.bye(self.local_ip(call.peer.ip), self.port, call.peer.transport)
        self.counters.byes_sent += 1
        self.transactions.send_request(call.peer, branch, data)

    def _unacked(self, tx: Transaction) -> None:
        call = tx.owner
        if isinstance(call, SipCall) and tx.status < 300 and self.calls.get(call.call_id) is call:
            self.warn("call %s: our 200 OK was never ACKed: ending the call", call.call_id)
            self._end_call(call, "no ACK", bye=True)

    # -- housekeeping and shutdown -------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Expire transactions; end streams silent past ``rtp_timeout_s``, and calls left without any."""
        self.transactions.expire(time.monotonic())
        for call in list(self.calls.values()):
            for receiver in call.timed_out(now, self.cfg.rtp_timeout_s):
                self.ctx.counters.timeouts += 1
                self.warn(
                    "%s: no RTP for %.0f s: ending the stream",
                    receiver.name,
                    self.cfg.rtp_timeout_s,
                )
                self._spawn(receiver.finish("rtp timeout"))
            if not call.receivers and call.sdp_version >= 0 and not call.negotiating:
                self._end_call(call, "rtp timeout", bye=True)

    async def close(self) -> None:
        """Stop taking calls; BYE and end every call (its streams score what they hold)."""
        self.accepting = False
        for task in list(self.tasks):
            if task.get_name() == ANSWERING:  # endings run on: their streams must close
                task.cancel()
        for call in list(self.calls.values()):
            if call.invite_tx is not None and call.sdp_version < 0:  # still being answered
                self._reply(call.invite_tx, 503, "Service Unavailable (shutting down)")
            self._end_call(call, "shutdown", bye=True)
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        self.transactions.close()
