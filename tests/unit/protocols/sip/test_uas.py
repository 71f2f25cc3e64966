"""The sans-I/O UAS: fixed call flows, then a Hypothesis state machine that drives it with random
INVITEs, retransmissions, ACKs, CANCELs, BYEs, re-INVITEs, junk and clock jumps, with the media
side (answering offers) played by the test, and checks what a UAS owes its peers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from streamd.errors import ProtocolError
from streamd.protocols.sip.dialog import Call, Rejected
from streamd.protocols.sip.message import SipRequest, SipResponse, parse_message
from streamd.protocols.sip.transaction import TIMEOUT, Peer, Send
from streamd.protocols.sip.uas import Action, EndCall, Forget, Log, Negotiate, Uas, UpdateMetadata

from tests.helpers.sip_samples import SIPP_OFFER

UDP = Peer("127.0.0.1", 5062, "UDP")
TCP = Peer("127.0.0.1", 5062, "TCP")
STRANGER = Peer("192.0.2.66", 5062, "UDP")
ANSWER = b"v=0\r\no=streamd 1 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def message(
    method: str,
    call_id: str,
    branch: str,
    cseq: int,
    *,
    to_tag: str | None = None,
    body: str = "",
    transport: str = "UDP",
    cseq_method: str | None = None,
) -> bytes:
    to = "<sip:service@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5062;branch={branch};rport\r\n"
        f"From: <sip:uac@127.0.0.1>;tag=uac-{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\nContact: <sip:uac@127.0.0.1:5062>\r\n"
        f"Max-Forwards: 70\r\n{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()


def new_uas(delay: float = 0.0, max_calls: int = 4) -> Uas:
    uas = Uas(
        port=5060,
        max_calls=max_calls,
        max_message_bytes=65535,
        answer_delay_s=delay,
        allowed=lambda ip: ip.startswith("127."),
        local_ip=lambda ip: "127.0.0.1",
    )
    uas.accepting = True
    return uas


def sent(actions: list[Action]) -> list[SipRequest | SipResponse]:
    return [parse_message(a.data) for a in actions if isinstance(a, Send)]


def statuses(actions: list[Action]) -> list[int]:
    return [m.status for m in sent(actions) if isinstance(m, SipResponse)]


def answer_call(uas: Uas, now: float, call_id: str = "c1") -> tuple[Call, str, list[Action]]:
    """INVITE, the media side answers: the call, our tag, everything sent."""
    out = uas.receive(message("INVITE", call_id, "z9hG4bKinv", 1, body=SIPP_OFFER), UDP, now)
    (negotiate,) = [a for a in out if isinstance(a, Negotiate)]
    assert negotiate.initial and statuses(out) == [100]
    out += uas.negotiated(negotiate.call, now, answer=ANSWER)
    ok = sent(out)[-1]
    assert isinstance(ok, SipResponse) and ok.status == 200 and ok.body == ANSWER
    assert ok.to_tag is not None
    return negotiate.call, ok.to_tag, out


def test_call_ack_bye() -> None:
    uas = new_uas()
    call, tag, _ = answer_call(uas, 0.0)
    assert uas.receive(message("ACK", "c1", "z9hG4bKack", 1, to_tag=tag), UDP, 0.1) == []
    assert call.state == "confirmed" and uas.transactions.handle_timeout(10.0) == []  # no resends
    out = uas.receive(message("BYE", "c1", "z9hG4bKbye", 2, to_tag=tag), UDP, 1.0)
    assert statuses(out) == [200] and [a.reason for a in out if isinstance(a, EndCall)] == ["bye"]
    assert uas.calls == {} and uas.counters.calls == 1


def test_unacked_2xx_ends_the_call_with_a_bye() -> None:
    uas = new_uas()
    _, tag, _ = answer_call(uas, 0.0)
    resent: list[Action] = []
    while (due := uas.deadline()) is not None and due < TIMEOUT:
        resent += uas.handle_timeout(due)
    assert statuses(resent) == [200] * 10  # 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s
    out = uas.handle_timeout(TIMEOUT)
    (bye,) = sent(out)
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.from_tag == tag
    assert [a.reason for a in out if isinstance(a, EndCall)] == ["no ACK"] and uas.calls == {}


def test_cancel_before_and_after_the_answer() -> None:
    uas = new_uas(delay=1.0)
    out = uas.receive(message("INVITE", "c1", "z9hG4bKinv", 1, body=SIPP_OFFER), UDP, 0.0)
    assert statuses(out) == [100, 180] and uas.deadline() == 1.0
    out = uas.receive(message("CANCEL", "c1", "z9hG4bKinv", 1), UDP, 0.5)
    assert sorted(statuses(out)) == [200, 487] and any(isinstance(a, Forget) for a in out)
    later = uas.handle_timeout(1.0)  # the ring delay ends quietly; Timer G resends the 487
    assert statuses(later) == [487] and len(later) == 1 and uas.calls == {}
    uas = new_uas()
    call, _, _ = answer_call(uas, 0.0)
    out = uas.receive(message("CANCEL", "c1", "z9hG4bKinv", 1), UDP, 0.2)
    assert statuses(out) == [200] and uas.calls == {"c1": call}  # too late: no effect


def test_glare_session_refresh_and_options_while_stopping() -> None:
    uas = new_uas()
    call, tag, _ = answer_call(uas, 0.0)
    uas.receive(message("ACK", "c1", "z9hG4bKack", 1, to_tag=tag), UDP, 0.1)
    out = uas.receive(message("INVITE", "c1", "z9hG4bKre", 2, to_tag=tag, body=SIPP_OFFER), UDP, 1)
    assert [a.initial for a in out if isinstance(a, Negotiate)] == [False]
    glare = uas.receive(
        message("UPDATE", "c1", "z9hG4bKup", 3, to_tag=tag, body=SIPP_OFFER), UDP, 1
    )
    assert statuses(glare) == [491]
    refused = uas.negotiated(call, 1.2, rejected=Rejected(488, "Not Acceptable Here"))
    assert statuses(refused) == [488] and uas.calls == {"c1": call}  # the call goes on
    refresh = uas.receive(message("INVITE", "c1", "z9hG4bKr2", 4, to_tag=tag), UDP, 2)
    assert [m.body for m in sent(refresh)] == [ANSWER]  # the current answer again
    out = uas.close(3.0)
    assert [a.reason for a in out if isinstance(a, EndCall)] == ["shutdown"]
    assert [m.method for m in sent(out) if isinstance(m, SipRequest)] == ["BYE"]
    assert statuses(uas.receive(message("OPTIONS", "o", "z9hG4bKo", 1), UDP, 4)) == [503]


def test_strangers_get_403_and_their_junk_no_answer() -> None:
    uas = new_uas()
    assert statuses(uas.receive(message("OPTIONS", "o", "z9hG4bKo", 1), STRANGER, 0)) == [403]
    bad = message("OPTIONS", "o", "z9hG4bKb", 1).replace(b"Content-Length: 0", b"Content-Length: x")
    assert [a for a in uas.receive(bad, STRANGER, 0) if isinstance(a, Send)] == []
    (answer,) = sent(uas.receive(bad, UDP, 0))  # an allowed peer is told why
    assert isinstance(answer, SipResponse) and answer.status == 400
    assert answer.reason.startswith("Bad Request (") and uas.counters.junk == 1
    assert uas.counters.refused == 2 and uas.counters.refused_unanswered == 1


# -- the state machine ---------------------------------------------------------------------------


@dataclass
class CallModel:
    """What the test knows of one call attempt (one INVITE, one Call-ID)."""

    call_id: str
    invite: bytes
    peer: Peer
    cseq: int = 1
    tag: str | None = None  # ours, from a 180 or 200
    ok_at: float | None = None  # our 200 to the INVITE first went out
    final: int = 0  # the INVITE's final status
    oks: dict[int, float] = field(default_factory=dict)  # 200s to INVITEs, by CSeq: first sent
    acked: set[int] = field(default_factory=set)  # CSeqs ACKed
    ended: str | None = None  # EndCall reason
    forgotten: bool = False
    byes: set[str] = field(default_factory=set)  # branches of our BYEs
    branches: list[str] = field(default_factory=list)


class UasMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.ids = itertools.count()
        self.models: dict[str, CallModel] = {}
        self.pending: dict[Call, Negotiate] = {}
        self.finals: dict[tuple[str, str], bytes] = {}  # (branch, method): the final response
        self.negotiated_branches: set[str] = set()
        self.closed = False

    @initialize(delay=st.sampled_from([0.0, 0.0, 1.5]))
    def start(self, delay: float) -> None:
        self.uas = new_uas(delay=delay, max_calls=2)

    # -- plumbing ------------------------------------------------------------------------------

    def _branch(self) -> str:
        return f"z9hG4bK{next(self.ids)}"

    def _send(self, data: bytes, peer: Peer = UDP) -> list[Action]:
        request: SipRequest | SipResponse | None = None
        branch: str | None = None
        try:
            request = parse_message(data)
            branch = request.branch
        except ProtocolError:
            pass
        if isinstance(request, SipRequest) and branch:  # a new transaction: new answers
            method = "INVITE" if request.method == "ACK" else request.method
            if self.uas.transactions.get((branch, method)) is None:
                self.finals.pop((branch, method), None)
        return self._apply(self.uas.receive(data, peer, self.now))

    def _apply(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            assert not (isinstance(action, Log) and action.level == "error"), action
            if isinstance(action, Send):
                self._sent(action)
            elif isinstance(action, Negotiate):
                tx = action.call.pending
                assert tx is not None and tx.key[0] not in self.negotiated_branches  # once each
                self.negotiated_branches.add(tx.key[0])
                assert action.call not in self.pending  # one offer at a time per call
                self.pending[action.call] = action
            elif isinstance(action, EndCall):
                model = self.models[action.call.call_id]
                assert model.ended is None or action.reason == "bye", (model.ended, action)
                model.ended = model.ended or action.reason
            elif isinstance(action, Forget):
                model = self.models[action.call.call_id]
                assert model.ended is None and model.ok_at is None  # only calls never answered
                model.forgotten = True
            else:
                assert isinstance(action, (Log, UpdateMetadata))
        return actions

    def _sent(self, send: Send) -> None:
        msg = parse_message(send.data)
        if isinstance(msg, SipRequest):
            assert msg.method == "BYE"
            ours = self.models[msg.call_id]
            assert ours.ok_at is not None and msg.from_tag == ours.tag  # only answered calls
            ours.byes.add(msg.branch or "")
            return
        method, model = msg.cseq[1], self.models.get(msg.call_id)
        key = (msg.branch or "", method)
        if msg.status >= 200:
            first = self.finals.setdefault(key, send.data)
            assert first == send.data, (first, send.data)  # one final per transaction, resent as is
        if model is None or method != "INVITE" or key[0] not in model.branches:
            return
        if msg.status == 200:
            model.oks.setdefault(msg.cseq[0], self.now)
        if key[0] != model.branches[0]:
            return
        if msg.status > 100 and msg.to_tag and model.tag is None and msg.status < 300:
            model.tag = msg.to_tag
        if msg.status >= 200:
            model.final = msg.status
            if msg.status == 200 and model.ok_at is None:
                model.ok_at = self.now

    def _live(self) -> list[str]:
        return sorted(c for c, m in self.models.items() if m.ended is None and not m.forgotten)

    # -- requests ------------------------------------------------------------------------------

    @rule(tcp=st.booleans(), answer_now=st.booleans())
    def invite(self, tcp: bool, answer_now: bool) -> None:
        """A new call; ``answer_now``: the media side answers at once (without a ring delay)."""
        call_id, branch = f"call{next(self.ids)}", self._branch()
        peer = TCP if tcp else UDP
        data = message("INVITE", call_id, branch, 1, body=SIPP_OFFER, transport=peer.transport)
        busy = len(self.uas.calls) >= 2
        self.models[call_id] = CallModel(call_id, data, peer, branches=[branch])
        out = statuses(self._send(data, peer))
        if self.closed:
            assert out == [503]
        elif busy:
            assert out == [486]
        else:
            assert out[0] == 100 and call_id in self.uas.calls
            call = self.uas.calls[call_id]
            if answer_now and call in self.pending:
                del self.pending[call]
                assert statuses(
                    self._apply(self.uas.negotiated(call, self.now, answer=ANSWER))
                ) == [200]
                event("answered")

    @rule(data=st.data())
    @precondition(lambda self: bool(self.models))
    def invite_again(self, data: st.DataObject) -> None:
        """A retransmitted INVITE (while its transaction lives): never a second call."""
        model = self.models[data.draw(st.sampled_from(sorted(self.models)))]
        if self.uas.transactions.get((model.branches[0], "INVITE")) is None:
            return
        before = dict(self.uas.calls)
        out = self._send(model.invite, model.peer)
        assert not any(isinstance(a, Negotiate) for a in out) and self.uas.calls == before
        event("retransmitted INVITE absorbed")
        assert self.uas.counters.retransmissions >= 1

    @rule(data=st.data())
    @precondition(lambda self: any(m.final for m in self.models.values()))
    def ack(self, data: st.DataObject) -> None:
        model = self.models[
            data.draw(st.sampled_from(sorted(c for c, m in self.models.items() if m.final)))
        ]
        if model.final >= 300:
            out = self._send(
                message("ACK", model.call_id, model.branches[0], 1, transport=model.peer.transport),
                model.peer,
            )
        else:
            cseq = data.draw(st.sampled_from(sorted(model.oks)))
            ack = message(
                "ACK",
                model.call_id,
                self._branch(),
                cseq,
                to_tag=model.tag,
                transport=model.peer.transport,
            )
            out = self._send(ack, model.peer)
            if model.ended is None:  # an ACK after the call ended changes nothing
                model.acked.add(cseq)
        assert [a for a in out if isinstance(a, Send)] == []

    @rule(data=st.data())
    @precondition(lambda self: bool(self.models))
    def cancel(self, data: st.DataObject) -> None:
        self._cancel(self.models[data.draw(st.sampled_from(sorted(self.models)))])

    @rule(data=st.data())
    @precondition(lambda self: any(self._answering(m) for m in self.models.values()))
    def cancel_answered(self, data: st.DataObject) -> None:
        """The race that matters most: a CANCEL just after (or just before) our answer."""
        live = sorted(c for c, m in self.models.items() if self._answering(m))
        self._cancel(self.models[data.draw(st.sampled_from(live))])

    def _answering(self, model: CallModel) -> bool:
        key = (model.branches[0], "INVITE")
        return model.ended is None and self.uas.transactions.get(key) is not None

    def _cancel(self, model: CallModel) -> None:
        invite_tx = self.uas.transactions.get((model.branches[0], "INVITE"))
        again = self.uas.transactions.get((model.branches[0], "CANCEL")) is not None
        answered_before = model.final != 0
        live_before = model.call_id in self.uas.calls
        out = self._send(
            message("CANCEL", model.call_id, model.branches[0], 1, transport=model.peer.transport),
            model.peer,
        )
        got = sorted(statuses(out))
        if again:  # a retransmitted CANCEL: its answer again (checked by _sent), nothing else
            assert all(not isinstance(a, (Forget, EndCall, Negotiate)) for a in out)
        elif invite_tx is None:
            assert got == [481]
        elif answered_before:  # a CANCEL after the final response changes nothing
            event(f"CANCEL after a {model.final // 100}xx")
            assert got == [200] and (model.call_id in self.uas.calls) == live_before
        else:
            assert got == [200, 487] and model.call_id not in self.uas.calls
            event("CANCEL before the answer")

    @rule(data=st.data(), tagged=st.booleans())
    @precondition(lambda self: bool(self.models))
    def bye(self, data: st.DataObject, tagged: bool) -> None:
        model = self.models[data.draw(st.sampled_from(sorted(self.models)))]
        model.cseq += 1
        tag = model.tag if tagged else "someone-else"
        live = (
            model.call_id in self.uas.calls
            and tag is not None
            and self.uas.calls[model.call_id].dialog.local_tag == tag
        )
        out = self._send(
            message(
                "BYE",
                model.call_id,
                self._branch(),
                model.cseq,
                to_tag=tag,
                transport=model.peer.transport,
            ),
            model.peer,
        )
        assert (200 in statuses(out)) == live
        if live:
            assert model.ended == "bye" and model.call_id not in self.uas.calls

    @rule(data=st.data(), method=st.sampled_from(["INVITE", "UPDATE", "INFO"]), body=st.booleans())
    @precondition(lambda self: any(m.tag for m in self.models.values()))
    def in_dialog(self, data: st.DataObject, method: str, body: bool) -> None:
        model = self.models[
            data.draw(st.sampled_from(sorted(c for c, m in self.models.items() if m.tag)))
        ]
        model.cseq += 1
        call = self.uas.calls.get(model.call_id)
        negotiating = call is not None and call.negotiating
        branch = self._branch()
        if method == "INVITE":
            model.branches.append(branch)
        out = self._send(
            message(
                method,
                model.call_id,
                branch,
                model.cseq,
                to_tag=model.tag,
                body=SIPP_OFFER if body else "",
                transport=model.peer.transport,
            ),
            model.peer,
        )
        got = statuses(out)
        if call is None:
            assert got == [481]
        elif method != "INFO" and negotiating:
            assert got == [491]  # glare: one offer at a time
            event("491 glare")
        elif method != "INFO" and body:
            assert got == [] and any(isinstance(a, Negotiate) for a in out)
        else:
            assert got == [200]

    @rule(tcp=st.booleans())
    def options(self, tcp: bool) -> None:
        out = self._send(message("OPTIONS", "ping", self._branch(), 1), TCP if tcp else UDP)
        assert statuses(out) == [503 if self.closed else 200]

    @rule(
        data=st.binary(max_size=200),
        start=st.sampled_from([b"", b"INVITE sip:x SIP/2.0\r\n", b"SIP/2.0 200 OK\r\n"]),
    )
    def junk(self, data: bytes, start: bytes) -> None:
        out = self._send(start + data)
        assert not any(isinstance(a, (Negotiate, EndCall, Forget)) for a in out)

    # -- the media side and the clock ----------------------------------------------------------

    @rule(
        data=st.data(),
        outcome=st.sampled_from(["answer", "answer", "rejected", "error", "gave up"]),
    )
    @precondition(lambda self: bool(self.pending))
    def media_answers(self, data: st.DataObject, outcome: str) -> None:
        call = data.draw(st.sampled_from(sorted(self.pending, key=lambda c: c.call_id)))
        negotiate = self.pending.pop(call)
        tx = call.pending
        kw: dict[str, object] = {}
        if outcome == "answer":
            kw["answer"] = ANSWER
        elif outcome == "rejected":
            kw["rejected"] = Rejected(503, "Service Unavailable (test)")
        elif outcome == "error":
            kw["error"] = "boom\r\nX: y"
        out = self._apply(self.uas.negotiated(call, self.now, **kw))  # type: ignore[arg-type]
        if tx is None or self.models[call.call_id].ended or self.models[call.call_id].forgotten:
            assert 200 not in statuses(out)
            return
        if outcome == "answer":
            assert statuses(out) == [200] and call.negotiating is False
            event("answered")
        elif outcome != "gave up":
            assert statuses(out) == [503 if outcome == "rejected" else 500]
            if negotiate.initial:
                assert call.call_id not in self.uas.calls

    @rule(data=st.data())
    @precondition(lambda self: bool(self.uas.calls))
    def media_gone(self, data: st.DataObject) -> None:
        call = self.uas.calls[data.draw(st.sampled_from(sorted(self.uas.calls)))]
        self._apply(self.uas.media_gone(call, self.now))
        model = self.models[call.call_id]
        assert (model.ended == "rtp timeout") == (call.answered and not call.negotiating)

    @rule(dt=st.one_of(st.floats(0, 2), st.floats(2, 70), st.just(TIMEOUT)))
    def clock_jumps(self, dt: float) -> None:
        self.now += dt
        self._apply(self.uas.handle_timeout(self.now))
        self._check_unacked()

    @rule()
    @precondition(lambda self: self.uas.deadline() is not None)
    def next_deadline(self) -> None:
        due = self.uas.deadline()
        assert due is not None
        self.now = max(self.now, due)
        self._apply(self.uas.handle_timeout(self.now))
        self._check_unacked()

    @rule()
    @precondition(lambda self: not self.closed)
    def shutdown(self) -> None:
        self.closed = True
        live = set(self.uas.calls)
        out = self._apply(self.uas.close(self.now))
        assert self.uas.calls == {} and not self.uas.accepting
        for call_id in live:
            assert self.models[call_id].ended is not None
        assert not any(isinstance(a, Negotiate) for a in out)
        self.pending.clear()  # the adapter cancels what it was answering

    def _check_unacked(self) -> None:
        """An un-ACKed 2xx ends the call (with a BYE) 64*T1 after it first went out."""
        for model in self.models.values():
            for cseq, ok_at in model.oks.items():
                if cseq not in model.acked and model.ended is None:
                    assert self.now < ok_at + TIMEOUT, model
            if model.ended == "no ACK":
                event("un-ACKed 2xx ended the call")
                assert set(model.oks) - model.acked and len(model.byes) == 1

    # -- always --------------------------------------------------------------------------------

    @invariant()
    def bounded_and_consistent(self) -> None:
        if not hasattr(self, "uas"):
            return
        assert len(self.uas.calls) <= 2
        assert len(self.uas.transactions.items) <= self.uas.transactions.limit
        for call_id, call in self.uas.calls.items():
            model = self.models[call_id]
            assert model.ended is None and not model.forgotten
            assert call.answered == (model.ok_at is not None)
        for model in self.models.values():
            assert len(model.byes) <= 1  # one BYE per call (its retransmissions are the layer's)
            if model.final == 487:
                assert model.ok_at is None  # a CANCELed INVITE never gets a 200


UasMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_uas_state_machine = UasMachine.TestCase
