"""The SIP user agent server as a state machine: bytes and time in, actions out.

No sockets and no clock: the adapter (:mod:`streamd.ingest.sip.uas`) calls :meth:`Uas.receive`
with every message, :meth:`Uas.handle_timeout` at :meth:`Uas.deadline`, and :meth:`Uas.negotiated`
when it has answered an offer; it carries out what comes back (:class:`Send`,
:class:`Negotiate`, :class:`UpdateMetadata`, :class:`Forget`, :class:`EndCall`, :class:`Log`).
What it answers:

- ``OPTIONS`` 200 (503 while stopping), so SBC keep-alives see the recorder up or draining.
- ``INVITE`` 100 Trying, then 200 OK with the adapter's SDP answer; with an answer delay a 180
  Ringing and a wait first. ``ACK``; ``BYE`` 200 and the call ends; ``CANCEL`` before the
  answer 200, and 487 to the INVITE (after the answer it changes nothing).
- re-INVITE and ``UPDATE`` in the dialog: a new offer, SIPREC metadata only, or (no body) a
  session refresh that gets the current answer again; 491 while another offer is being
  answered. ``INFO`` 200.
- 401 with a digest challenge when ``auth`` is set and a new INVITE carries no valid
  credentials (:mod:`streamd.protocols.sip.digest`; in-dialog requests ride on the dialog).
- 403 from outside ``allow_from`` (stateless, see the core); 486 over ``max_calls`` or over
  ``max_calls_per_source`` calls from one address; 488 for an offer with more than
  ``max_media_per_call`` m-lines (each would take an RTP port and a stream); 503 while stopping; 420
  for a ``Require`` other than ``siprec``; 415 for bodies we cannot read; 488 without an SDP offer;
  400 with the reason for malformed requests (rebuilt from their good header lines, and only
  for allowed sources: junk from strangers is counted, never answered); 481 for unknown dialogs
  and transactions; 500 for a CSeq out of order; 405 for REGISTER and the like; 501 for
  unknown methods.

We send a request of our own only to end a call: a BYE when the adapter says its media is gone
(``rtp_timeout_s``), when our 2xx was never ACKed, and on shutdown, to where the INVITE came
from (over the INVITE's TCP connection, or by UDP with Timer E retransmissions).
"""

from __future__ import annotations

from collections.abc import Callable

from streamd.protocols.sip.core import (
    Action,
    EndCall,
    Forget,
    Log,
    Negotiate,
    SipCounters,
    UasCore,
    UpdateMetadata,
)
from streamd.protocols.sip.dialog import (
    ACCEPT,
    ALLOW,
    Call,
    Dialog,
    Rejected,
    check_require,
    read_offer,
)
from streamd.protocols.sip.digest import DigestAuth
from streamd.protocols.sip.malformed import phrase
from streamd.protocols.sip.message import SipError, SipRequest
from streamd.protocols.sip.sdp import SessionDescription
from streamd.protocols.sip.siprec import RecordingMetadata
from streamd.protocols.sip.transaction import Key, Peer, Send, ServerTransaction, Unacked

__all__ = [
    "Action",
    "EndCall",
    "Forget",
    "Log",
    "Negotiate",
    "Peer",
    "SipCounters",
    "Uas",
    "UpdateMetadata",
]


class Uas(UasCore):
    """See the module docstring; :class:`~streamd.protocols.sip.core.UasCore` does what every
    request goes through, this class what each method means for a call."""

    def __init__(
        self,
        *,
        port: int,
        max_calls: int,
        max_message_bytes: int,
        answer_delay_s: float,
        allowed: Callable[[str], bool],
        local_ip: Callable[[str], str],
        max_calls_per_source: int | None = None,
        max_media_per_call: int = 8,
        auth: DigestAuth | None = None,
    ) -> None:
        super().__init__(
            port=port,
            max_message_bytes=max_message_bytes,
            max_transactions=max(1024, 8 * max_calls),
            allowed=allowed,
            local_ip=local_ip,
        )
        self.max_calls = max_calls
        self.max_calls_per_source = max_calls_per_source or max_calls
        self.max_media_per_call = max_media_per_call
        self.auth = auth
        self.answer_delay_s = answer_delay_s
        self.accepting = False
        self.calls: dict[str, Call] = {}
        self._offers: dict[Call, tuple[SessionDescription, RecordingMetadata | None]] = {}
        self._ringing: dict[Call, float] = {}  # answer delays: when to start answering
        self._now = 0.0

    # -- entry points (and receive, in the core) -------------------------------------------------

    def negotiated(
        self,
        call: Call,
        now: float,
        *,
        answer: bytes | None = None,
        rejected: Rejected | None = None,
        error: str | None = None,
    ) -> list[Action]:
        """The adapter answered ``call``'s pending offer: the SDP ``answer``, or ``rejected``,
        or an unexpected ``error``; none of them when it gave up (CANCEL, shutdown)."""
        self._now = now
        tx, call.pending, call.negotiating = call.pending, None, False
        if tx is None:
            return []
        if self.calls.get(call.call_id) is not call:  # ended (BYE) while its offer was answered
            if answer is not None:
                self._reply(tx, 487)
                self._out.append(EndCall(call, "bye"))  # the streams it just opened
            return self._flush()
        initial = not call.answered and tx is call.invite_tx
        if answer is not None:
            call.last_answer = answer
            self._answered(tx, call, answer)
            if initial:
                call.answered = True
                self.counters.calls += 1
        elif rejected is not None or error is not None:
            if rejected is not None:
                self._reply_rejected(tx, rejected)
            else:
                self._reply(tx, 500, f"Server Internal Error ({phrase(error or '', 60)})")
            if initial:
                self._forget(call)
        return self._flush()

    def media_gone(self, call: Call, now: float) -> list[Action]:
        """Every stream of ``call`` ended (RTP timeout, m-lines removed): hang up, with a BYE,
        unless an offer is being answered (that may bring new streams)."""
        self._now = now
        if self.calls.get(call.call_id) is call and call.answered and not call.negotiating:
            self._end_call(call, "rtp timeout", bye=True)
        return self._flush()

    def deadline(self) -> float | None:
        """When :meth:`handle_timeout` has something to do next (None: nothing pending)."""
        due = self.transactions.deadline()
        ring = min(self._ringing.values(), default=None)
        return ring if due is None else due if ring is None else min(due, ring)

    def handle_timeout(self, now: float) -> list[Action]:
        """Timers: retransmissions, transaction timeouts, an answer delay that ran out."""
        self._now = now
        for event in self.transactions.handle_timeout(now):
            if isinstance(event, Send):
                self._out.append(event)
            elif isinstance(event, Unacked):
                self._unacked(event.tx)
        for call, until in list(self._ringing.items()):
            if until <= now:
                del self._ringing[call]
                self._start(call)
        return self._flush()

    def close(self, now: float) -> list[Action]:
        """Stop taking calls; 503 to INVITEs still being answered, BYE and end every call. The
        transactions run on (the BYEs are retransmitted) until the adapter closes them."""
        self._now = now
        self.accepting = False
        for call in list(self.calls.values()):
            call.pending = None
            call.negotiating = False
            if call.invite_tx is not None and not call.answered:
                self._reply(call.invite_tx, 503, "Service Unavailable (shutting down)")
            self._end_call(call, "shutdown", bye=True)
        return self._flush()

    def _dialog(self, req: SipRequest) -> Call | None:
        call = self.calls.get(req.call_id)
        if call is None or req.to_tag != call.dialog.local_tag:
            return None
        if call.dialog.remote_tag is not None and req.from_tag != call.dialog.remote_tag:
            return None
        return call

    def _in_dialog(self, tx: ServerTransaction, req: SipRequest) -> Call | None:
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

    # -- methods -----------------------------------------------------------------------------

    def _on_options(self, tx: ServerTransaction, req: SipRequest) -> None:
        headers = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", "siprec")]
        headers.append(("Contact", self._contact(tx.peer)))
        self._reply(tx, 200 if self.accepting else 503, headers=headers)

    def _on_info(self, tx: ServerTransaction, req: SipRequest) -> None:
        if self._in_dialog(tx, req) is not None:
            self._reply(tx, 200)

    def _on_bye(self, tx: ServerTransaction, req: SipRequest) -> None:
        call = self._in_dialog(tx, req)
        if call is not None:
            self._reply(tx, 200)
            where = (call.call_id, tx.peer.ip, tx.peer.port)
            self._out.append(Log("info", "call %s: BYE from %s:%d", where))
            self._end_call(call, "bye")

    def _on_cancel(self, tx: ServerTransaction, req: SipRequest) -> None:
        invite = self.transactions.get((tx.key[0], "INVITE"))
        if invite is None:
            self._reply(tx, 481, "Call/Transaction Does Not Exist")
            return
        tx.owner = invite.owner  # the same To tag as the INVITE's responses (§9.2)
        self._reply(tx, 200)
        call = invite.owner
        if invite.final or not isinstance(call, Call):
            return  # already answered: the CANCEL has no effect (the caller will BYE)
        call.cancelled = True
        self._reply(invite, 487)
        self._out.append(Log("info", "call %s: CANCELed before the answer", (call.call_id,)))
        self._forget(call)

    def _on_invite(self, tx: ServerTransaction, req: SipRequest) -> None:
        if req.to_tag is not None:
            call = self._in_dialog(tx, req)
            if call is not None:
                self._offer_in_dialog(tx, req, call)
            return
        if not self.accepting:
            retry = [("Retry-After", "30")]
            self._reply(tx, 503, "Service Unavailable (shutting down)", headers=retry)
            return
        if len(self.calls) >= self.max_calls:
            where = (req.call_id, tx.peer.ip, self.max_calls)
            self._warn("INVITE %s from %s: max_calls (%d) reached: 486", *where)
            self._reply(tx, 486, f"Busy Here (max_calls {self.max_calls} reached)")
            return
        if not self._authorized(tx, req):
            return
        mine = sum(1 for c in self.calls.values() if c.peer.ip == tx.peer.ip)
        if mine >= self.max_calls_per_source:
            self.counters.over_source_calls += 1
            where = (req.call_id, tx.peer.ip, self.max_calls_per_source)
            self._warn("INVITE %s from %s: max_calls_per_source (%d) reached: 486", *where)
            limit = self.max_calls_per_source
            self._reply(tx, 486, f"Busy Here (max_calls_per_source {limit} reached)")
            return
        if req.call_id in self.calls:
            self._reply(tx, 482, "Loop Detected")
            return
        try:
            check_require(req)
            offer, metadata = read_offer(req, initial=True)
            dialog = Dialog.of(req)
        except Rejected as exc:
            self._reply_rejected(tx, exc)
            return
        except SipError as exc:
            self._reply(tx, 400, f"Bad Request ({phrase(str(exc))})")
            return
        assert offer is not None
        if not self._media_ok(tx, offer):
            return
        call = Call(dialog, tx.peer, invite_tx=tx, pending=tx, negotiating=True)
        tx.owner = call
        self.calls[call.call_id] = call
        self._reply(tx, 100)
        self._offers[call] = (offer, metadata)
        if self.answer_delay_s:
            self._reply(tx, 180)
            self._ringing[call] = self._now + self.answer_delay_s
        else:
            self._start(call)

    def _on_update(self, tx: ServerTransaction, req: SipRequest) -> None:
        call = self._in_dialog(tx, req)
        if call is not None:
            self._offer_in_dialog(tx, req, call)

    def _offer_in_dialog(self, tx: ServerTransaction, req: SipRequest, call: Call) -> None:
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
        if offer is not None and not self._media_ok(tx, offer):
            return
        if offer is None:
            if metadata is not None:
                self._out.append(UpdateMetadata(call, metadata))
            self._answered(tx, call, call.last_answer if req.method.upper() == "INVITE" else b"")
            return
        call.pending, call.negotiating = tx, True
        self._offers[call] = (offer, metadata)
        self._start(call)

    def _authorized(self, tx: ServerTransaction, req: SipRequest) -> bool:
        """Digest credentials on a new INVITE (when ``auth`` is set); else a 401 challenge."""
        if self.auth is None:
            return True
        outcome = self.auth.check(
            req.method.upper(), req.uri, req.headers.get_all("Authorization"), self._now
        )
        if outcome.ok:
            return True
        if outcome.verdict == "bad":
            self.counters.auth_failures += 1
            where = (req.call_id, tx.peer.ip, outcome.username or "?", outcome.why)
            self._warn("INVITE %s from %s: digest auth failed for %s (%s): 401", *where)
        self.counters.auth_challenges += 1
        stale = outcome.verdict == "stale"
        challenges = [("WWW-Authenticate", v) for v in self.auth.challenge(self._now, stale=stale)]
        self._reply(tx, 401, headers=challenges)
        return False

    def _media_ok(self, tx: ServerTransaction, offer: SessionDescription) -> bool:
        """At most ``max_media_per_call`` m-lines: each would hold an RTP port and a stream."""
        if len(offer.media) <= self.max_media_per_call:
            return True
        self.counters.too_many_media += 1
        where = (tx.key[1], tx.peer.ip, len(offer.media), self.max_media_per_call)
        self._warn("SIP %s from %s: %d m-lines, over max_media_per_call (%d): 488", *where)
        reason = f"Not Acceptable Here (more than {self.max_media_per_call} m-lines)"
        self._reply(tx, 488, reason)
        return False

    def _start(self, call: Call) -> None:
        offer, metadata = self._offers.pop(call)
        initial = not call.answered and call.pending is call.invite_tx
        self._out.append(Negotiate(call, offer, metadata, initial))

    def _reply_rejected(self, tx: ServerTransaction, exc: Rejected) -> None:
        if exc.status >= 500 or exc.status == 488:
            where = (tx.key[1], tx.peer.ip, tx.peer.port, exc.status, exc.reason)
            self._warn("SIP %s from %s:%d: %d %s", *where)
        self._reply(tx, exc.status, exc.reason, headers=exc.headers)

    def _answered(self, tx: ServerTransaction, call: Call, body: bytes) -> None:
        if tx.invite:  # its 2xx is resent until the ACK with the same CSeq comes
            call.unacked[tx.request.cseq[0]] = tx
        headers = [("Contact", self._contact(tx.peer)), ("Allow", ALLOW), ("Supported", "siprec")]
        content_type = "application/sdp" if body else None
        self._reply(tx, 200, headers=headers, body=body, content_type=content_type)

    def _ack(self, req: SipRequest, key: Key) -> None:
        if self.transactions.receive_ack(key, self._now):
            return  # the ACK of a non-2xx final: same transaction
        call = self._dialog(req)
        if call is None:
            self.counters.stray += 1
            return
        invite = call.unacked.pop(req.cseq[0], None)
        if invite is not None:
            self.transactions.acked(invite)
        if call.state == "proceeding":
            call.state = "confirmed"

    # -- ending calls ----------------------------------------------------------------------------

    def _forget(self, call: Call) -> None:
        self._offers.pop(call, None)
        self._ringing.pop(call, None)
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
            self._out.append(Forget(call))

    def _end_call(self, call: Call, reason: str, bye: bool = False) -> None:
        self._offers.pop(call, None)
        self._ringing.pop(call, None)
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        call.state = "ended"
        if call.invite_tx is not None:
            self._reply(call.invite_tx, 487)  # BYE in the early dialog (nothing once answered)
        for invite in call.unacked.values():
            self.transactions.acked(invite)  # no more 2xx retransmissions
        call.unacked.clear()
        if bye and call.answered:
            via = self.local_ip(call.peer.ip)
            branch, data = call.dialog.bye(via, self.port, call.peer.transport)
            self.counters.byes_sent += 1
            self._out.extend(self.transactions.send_request(call.peer, branch, data, self._now))
        self._out.append(EndCall(call, reason))

    def _unacked(self, tx: ServerTransaction) -> None:
        call = tx.owner
        if isinstance(call, Call) and self.calls.get(call.call_id) is call:
            self._warn("call %s: our 200 OK was never ACKed: ending the call", call.call_id)
            self._end_call(call, "no ACK", bye=True)
