"""The sans-I/O transaction layer: fixed scenarios, then a Hypothesis state machine that sends
random requests, retransmissions, responses and ACKs at random clock jumps and checks the
RFC 3261 §17 guarantees against a model of its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamd.protocols.sip.message import SipRequest, parse_message
from streamd.protocols.sip.transaction import (
    T1,
    T2,
    T4,
    TIMEOUT,
    Peer,
    RequestTimeout,
    Send,
    Terminated,
    Transactions,
    Unacked,
    transaction_id,
)

UDP = Peer("127.0.0.1", 5062, "UDP")
TCP = Peer("127.0.0.1", 5063, "TCP")


def request(method: str, branch: str) -> SipRequest:
    text = (
        f"{method} sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:service@127.0.0.1>\r\nCall-ID: {branch}\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def resend_times(start: float, until: float) -> list[float]:
    """When a final response sent at ``start`` over UDP is resent: T1, doubling, capped at T2."""
    times, interval, t = [], T1, start + T1
    while t < until:
        times.append(t)
        interval = min(2 * interval, T2)
        t += interval
    return times


def run_to(layer: Transactions, until: float) -> list[tuple[float, object]]:
    """Step the clock from deadline to deadline up to ``until``; (time, event) for each event."""
    out: list[tuple[float, object]] = []
    while (due := layer.deadline()) is not None and due <= until:
        out.extend((due, event) for event in layer.handle_timeout(due))
    return out


def test_non_2xx_resent_on_timer_g_until_ack_then_timer_i() -> None:
    layer = Transactions(16)
    tx, sends = layer.receive(
        request("INVITE", "z9hG4bKa"), ("z9hG4bKa", "INVITE"), UDP, ("127.0.0.1", 5062), 0.0
    )
    assert tx is not None and sends == []
    assert layer.respond(tx, b"486", 486, 10.0) == [Send(UDP, b"486", ("127.0.0.1", 5062))]
    events = run_to(layer, 20.0)
    assert [t for t, e in events if isinstance(e, Send)] == resend_times(10.0, 20.0)
    assert layer.receive_ack(("z9hG4bKa", "INVITE"), 20.0) and tx.state == "confirmed"
    assert run_to(layer, 20.0 + T4) == [(20.0 + T4, Terminated(("z9hG4bKa", "INVITE")))]
    assert layer.get(("z9hG4bKa", "INVITE")) is None and layer.deadline() is None


def test_unacked_2xx_is_reported_at_timer_l_and_never_resent_over_tcp() -> None:
    for peer in (UDP, TCP):
        layer = Transactions(16)
        key = ("z9hG4bKb", "INVITE")
        tx, _ = layer.receive(request("INVITE", key[0]), key, peer, ("127.0.0.1", 5062), 0.0)
        assert tx is not None
        layer.respond(tx, b"200", 200, 1.0)
        events = run_to(layer, 100.0)
        sends = [t for t, e in events if isinstance(e, Send)]
        assert sends == ([] if peer.reliable else resend_times(1.0, 1.0 + TIMEOUT))
        assert [(t, type(e)) for t, e in events if not isinstance(e, Send)] == [
            (1.0 + TIMEOUT, Unacked), (1.0 + TIMEOUT, Terminated),
        ]  # fmt: skip


def test_retransmission_gets_the_last_response_and_is_not_delivered() -> None:
    layer = Transactions(16)
    key = ("z9hG4bKc", "OPTIONS")
    tx, _ = layer.receive(request("OPTIONS", key[0]), key, UDP, ("127.0.0.1", 5062), 0.0)
    assert tx is not None
    assert layer.receive(tx.request, key, UDP, ("127.0.0.1", 5062), 0.1) == (None, [])
    layer.respond(tx, b"200", 200, 0.2)
    again = layer.receive(tx.request, key, UDP, ("127.0.0.1", 5062), 0.3)
    assert again == (None, [Send(UDP, b"200", ("127.0.0.1", 5062))])
    assert run_to(layer, 100.0) == [(0.2 + TIMEOUT, Terminated(key))]  # Timer J, nothing resent


def test_our_bye_is_resent_on_timer_e_and_times_out_on_timer_f() -> None:
    layer = Transactions(16)
    assert layer.send_request(UDP, "z9hG4bKbye", b"BYE", 0.0) == [
        Send(UDP, b"BYE", ("127.0.0.1", 5062))
    ]
    events = run_to(layer, 100.0)
    assert [t for t, e in events if isinstance(e, Send)] == resend_times(0.0, TIMEOUT)
    assert [e for _, e in events if not isinstance(e, Send)] == [
        RequestTimeout("z9hG4bKbye"), Terminated(("z9hG4bKbye", "BYE")),
    ]  # fmt: skip
    layer.send_request(UDP, "z9hG4bKok", b"BYE", 200.0)
    assert layer.receive_response("z9hG4bKok", 200, 200.2) and not layer.receive_response(
        "x", 200, 200.2
    )
    assert layer.receive_response("z9hG4bKok", 200, 201.0)  # a retransmitted 200: absorbed
    assert run_to(layer, 300.0) == [(200.2 + T4, Terminated(("z9hG4bKok", "BYE")))]  # Timer K


def test_rfc2543_identity_when_there_is_no_magic_cookie() -> None:
    old = request("INVITE", "1234")
    assert (
        transaction_id(old).startswith("1234|1|a|")
        and transaction_id(request("INVITE", "z9hG4bKx")) == "z9hG4bKx"
    )


# -- the state machine ---------------------------------------------------------------------------

LIMIT = 6
BRANCHES = [f"z9hG4bK{i}" for i in range(9)]  # more than LIMIT: the table must evict


@dataclass
class Model:
    """What the test expects of one live server transaction."""

    peer: Peer
    invite: bool
    response: bytes | None = None
    status: int = 0
    final_at: float | None = None
    acked_at: float | None = None
    acked_2xx: bool = False
    sends: list[float] = field(default_factory=list)  # when the final response went out


class TransactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.layer = Transactions(LIMIT)
        self.live: dict[tuple[str, str], Model] = {}  # insertion order = eviction order
        self.delivered: dict[tuple[str, str], int] = {}  # deliveries while live
        self.clients: dict[str, tuple[Peer, float, bool]] = {}  # branch: peer, sent, answered
        self.unacked: list[tuple[str, str]] = []
        self.timed_out: set[str] = set()
        self.serial = 0

    # -- requests in ---------------------------------------------------------------------------

    @rule(
        branch=st.sampled_from(BRANCHES),
        method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]),
        tcp=st.booleans(),
    )
    def request_arrives(self, branch: str, method: str, tcp: bool) -> None:
        key = (branch, method)
        model = self.live.get(key)
        peer = TCP if tcp else UDP
        tx, sends = self.layer.receive(
            request(method, branch), key, peer, (peer.ip, peer.port), self.now
        )
        if model is not None:  # a retransmission: never delivered again, the last response again
            assert tx is None and self.delivered[key] == 1
            assert sends == (
                []
                if model.response is None
                else [Send(model.peer, model.response, (model.peer.ip, model.peer.port))]
            )
            return
        assert tx is not None and sends == []
        if len(self.live) >= LIMIT:  # the oldest is evicted, silently
            del self.live[next(iter(self.live))]
        self.live[key] = Model(peer, method == "INVITE")
        self.delivered[key] = 1

    @rule(data=st.data(), status=st.sampled_from([100, 180, 200, 486, 487, 503]))
    @precondition(lambda self: bool(self.live))
    def tu_responds(self, data: st.DataObject, status: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.live)))
        model = self.live[key]
        tx = self.layer.get(key)
        assert tx is not None
        self.serial += 1
        body = f"{key}|{status}|{self.serial}".encode()
        sends = self.layer.respond(tx, body, status, self.now)
        if model.final_at is not None:
            assert sends == []  # a final response is never replaced
            return
        assert sends == [Send(model.peer, body, (model.peer.ip, model.peer.port))]
        model.response, model.status = body, status
        if status >= 200:
            model.final_at = self.now
            model.sends.append(self.now)

    @rule(branch=st.sampled_from(BRANCHES))
    def ack_arrives(self, branch: str) -> None:
        key = (branch, "INVITE")
        model = self.live.get(key)
        absorbed = self.layer.receive_ack(key, self.now)
        assert absorbed == (model is not None and model.status >= 300)
        if absorbed and model is not None and model.acked_at is None:
            model.acked_at = self.now

    @rule(data=st.data())
    @precondition(lambda self: any(m.invite and 200 <= m.status < 300 for m in self.live.values()))
    def tu_sees_ack_to_2xx(self, data: st.DataObject) -> None:
        keys = sorted(k for k, m in self.live.items() if m.invite and 200 <= m.status < 300)
        key = data.draw(st.sampled_from(keys))
        tx = self.layer.get(key)
        assert tx is not None
        self.layer.acked(tx)
        self.live[key].acked_2xx = True

    # -- our requests --------------------------------------------------------------------------

    @rule(tcp=st.booleans())
    def we_send_bye(self, tcp: bool) -> None:
        self.serial += 1
        branch, peer = f"z9hG4bKours{self.serial}", TCP if tcp else UDP
        if len(self.clients) >= LIMIT:
            del self.clients[next(iter(self.clients))]
        assert self.layer.send_request(peer, branch, b"BYE", self.now) == [
            Send(peer, b"BYE", (peer.ip, peer.port))
        ]
        self.clients[branch] = (peer, self.now, False)

    @rule(data=st.data(), status=st.sampled_from([100, 200, 481]))
    @precondition(lambda self: bool(self.clients))
    def response_to_our_bye(self, data: st.DataObject, status: int) -> None:
        branch = data.draw(st.sampled_from(sorted(self.clients)))
        assert self.layer.receive_response(branch, status, self.now)
        peer, sent, answered = self.clients[branch]
        self.clients[branch] = (peer, sent, answered or status >= 200)

    # -- time ----------------------------------------------------------------------------------

    @rule(dt=st.one_of(st.floats(0, 3), st.floats(3, 80), st.sampled_from([T1, T2, TIMEOUT])))
    def clock_jumps(self, dt: float) -> None:
        self.now += dt
        self._fire(self.layer.handle_timeout(self.now), exact=False)

    @rule()
    @precondition(lambda self: self.layer.deadline() is not None)
    def next_deadline(self) -> None:
        due = self.layer.deadline()
        assert due is not None and due >= self.now - 80  # never far behind a clock we drove
        exact = due >= self.now
        self.now = max(self.now, due)
        self._fire(self.layer.handle_timeout(self.now), exact)

    def _fire(self, events: Sequence[object], exact: bool) -> None:
        for event in events:
            if isinstance(event, Send):
                self._resent(event, exact)
            elif isinstance(event, Unacked):
                model = self.live.get(event.tx.key)
                assert model is not None and 200 <= model.status < 300 and not model.acked_2xx
                assert model.final_at is not None and self.now >= model.final_at + TIMEOUT
                self.unacked.append(event.tx.key)
            elif isinstance(event, Terminated):
                if event.key in self.live:
                    model = self.live.pop(event.key)
                    self._check_end(model)
                else:
                    _, _, answered = self.clients.pop(event.key[0])
                    assert answered or event.key[0] in self.timed_out
            elif isinstance(event, RequestTimeout):
                _, sent, answered = self.clients[event.branch]
                assert not answered and self.now >= sent + TIMEOUT
                self.timed_out.add(event.branch)
        # everything due by now happened: nothing live is past its end
        for key, model in self.live.items():
            if model.final_at is not None and model.acked_at is None:
                assert self.now < model.final_at + TIMEOUT, key
                assert model.invite or not model.peer.reliable, key  # Timer J is 0 over TCP
            if model.acked_at is not None:
                assert self.now < model.acked_at + (0 if model.peer.reliable else T4), key

    def _resent(self, event: Send, exact: bool) -> None:
        if event.data == b"BYE":
            assert not event.peer.reliable  # never over TCP
            return
        key = next(k for k, m in self.live.items() if m.response == event.data)
        model = self.live[key]
        assert not model.peer.reliable and model.invite  # only INVITE finals, only over UDP
        assert model.acked_at is None and not model.acked_2xx  # not once ACKed
        k = len(model.sends) - 1
        interval = min(T1 * 2**k, T2)
        gap = self.now - model.sends[-1]
        assert gap >= interval - 1e-9, (gap, interval)
        if exact:
            assert gap == pytest.approx(interval), (gap, interval)
        model.sends.append(self.now)

    def _check_end(self, model: Model) -> None:
        """Every transaction ends 64*T1 after its final response (T4 after a late ACK); the
        un-ACKed 2xx was reported before it went."""
        if model.final_at is None:
            return  # the TU never answered: dropped at the stale limit
        limit = model.final_at + TIMEOUT
        if model.acked_at is not None:
            limit = min(limit, model.acked_at + (0 if model.peer.reliable else T4))
        if not model.invite and model.peer.reliable:
            limit = model.final_at  # Timer J is 0 over TCP
        assert self.now >= limit - 1e-9

    @invariant()
    def table_is_bounded(self) -> None:
        assert len(self.layer.items) <= LIMIT and len(self.layer.clients) <= LIMIT
        assert set(self.layer.items) == set(self.live)
        assert len(self.layer._heap) <= 4 * (LIMIT * 2) + 64 + 1

    @invariant()
    def deadline_is_the_soonest_timer(self) -> None:
        dues = [tx.due for tx in self.layer.items.values()]
        dues += [c.due for c in self.layer.clients.values()]
        assert self.layer.deadline() == (min(dues) if dues else None)


TransactionMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_transaction_state_machine = TransactionMachine.TestCase
