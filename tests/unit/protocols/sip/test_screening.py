"""Checks before work (issue 13 items 2 and 3), sans-I/O: strangers are refused before parsing
and create no state, lengths are capped, calls and m-lines are limited per source."""

from __future__ import annotations

import pytest

from streamd.protocols.sip.headers import MAX_PARAMS, SipHeaderError, parse_params
from streamd.protocols.sip.message import MAX_HEADER_LINE, SipError, parse_message
from streamd.protocols.sip.transaction import Peer
from streamd.protocols.sip.uas import Negotiate, Uas

from tests.helpers.sip_samples import SIPP_OFFER
from tests.unit.protocols.sip.test_uas import STRANGER, UDP, message, new_uas, statuses

OTHER = Peer("127.0.0.2", 5062, "UDP")


def quota_uas(per_source: int = 2, media: int = 8) -> Uas:
    uas = Uas(
        port=5060,
        max_calls=10,
        max_message_bytes=65535,
        answer_delay_s=0,
        allowed=lambda ip: ip.startswith("127."),
        local_ip=lambda ip: "127.0.0.1",
        max_calls_per_source=per_source,
        max_media_per_call=media,
    )
    uas.accepting = True
    return uas


def test_a_strangers_big_datagram_is_not_parsed() -> None:
    uas = new_uas()
    via = "Via: SIP/2.0/UDP 192.0.2.66:5062;branch=z9hG4bK" + "a" * 60_000 + "\r\n"
    big = message("OPTIONS", "o", "z9hG4bKo", 1).replace(b"Via: ", via.encode() + b"X-Via: ", 1)
    assert len(big) > 60_000
    assert statuses(uas.receive(big, STRANGER, 0)) == []
    c = uas.counters
    assert (c.refused, c.refused_unanswered, c.junk, sum(c.requests.values())) == (1, 1, 0, 0)
    assert uas.transactions.items == {}


def test_refused_invites_create_no_state_and_a_live_call_keeps_its_transaction() -> None:
    uas = new_uas()
    invite = message("INVITE", "live", "z9hG4bKlive", 1, body=SIPP_OFFER)
    assert any(isinstance(a, Negotiate) for a in uas.receive(invite, UDP, 0))
    before = dict(uas.transactions.items)
    answered = 0
    for n in range(2500):
        out = uas.receive(message("INVITE", f"s{n}", f"z9hG4bK{n}", 1), STRANGER, n / 1000)
        answered += statuses(out) == [403]
    assert uas.transactions.items == before  # no stranger state, nothing evicted
    assert 20 <= answered <= 25 + 2500 * 20 / 1000  # stateless 403s at 20/s, the rest dropped
    assert uas.counters.refused == 2500
    assert uas.counters.refused_unanswered == 2500 - answered
    # the live call's INVITE retransmitted: the same 100 Trying again, never 482
    assert statuses(uas.receive(invite, UDP, 3.0)) == [100]


def test_header_line_and_parameter_caps() -> None:
    long = message("OPTIONS", "o", "z9hG4bKo", 1).replace(
        b"Max-Forwards: 70", b"X-Long: " + b"x" * MAX_HEADER_LINE
    )
    with pytest.raises(SipError, match="header line longer"):
        parse_message(long)
    with pytest.raises(SipHeaderError, match="parameters"):
        parse_params(";a" * (MAX_PARAMS + 1))
    with pytest.raises(SipHeaderError, match="parameter longer"):
        parse_params(";a=" + "b" * 2000)
    assert len(parse_params(";a" * 10)) == 1 and parse_params(";x=1;y")["x"] == "1"
    uas = new_uas()
    uas.receive(long, UDP, 0)
    assert uas.counters.junk == 1 and uas.transactions.items == {}


def test_calls_per_source() -> None:
    uas = quota_uas(per_source=2)
    for n in range(2):
        out = uas.receive(message("INVITE", f"c{n}", f"z9hG4bKc{n}", 1, body=SIPP_OFFER), UDP, 0)
        assert any(isinstance(a, Negotiate) for a in out)
    third = message("INVITE", "c2", "z9hG4bKc2", 1, body=SIPP_OFFER)
    assert statuses(uas.receive(third, UDP, 0)) == [486]
    assert uas.counters.over_source_calls == 1
    other = message("INVITE", "o1", "z9hG4bKo1", 1, body=SIPP_OFFER)
    assert any(isinstance(a, Negotiate) for a in uas.receive(other, OTHER, 0))


def test_m_lines_per_offer() -> None:
    uas = quota_uas(media=2)
    many = SIPP_OFFER + "".join("m=audio 6002 RTP/AVP 0\r\na=inactive\r\n" for _ in range(500))
    out = uas.receive(message("INVITE", "m", "z9hG4bKm", 1, body=many), UDP, 0)
    assert statuses(out) == [488] and not any(isinstance(a, Negotiate) for a in out)
    assert uas.counters.too_many_media == 1 and uas.calls == {}
    two = SIPP_OFFER + "m=audio 6002 RTP/AVP 0\r\n"
    out = uas.receive(message("INVITE", "m2", "z9hG4bKm2", 1, body=two), UDP, 0)
    assert any(isinstance(a, Negotiate) for a in out)


def test_sips_uris_are_only_served_over_tls() -> None:
    uas = new_uas()
    sips = message("OPTIONS", "s", "z9hG4bKs", 1).replace(b"OPTIONS sip:", b"OPTIONS sips:", 1)
    assert statuses(uas.receive(sips, UDP, 0)) == [416]
    tls = Peer("127.0.0.1", 5062, "TLS")
    assert statuses(uas.receive(sips.replace(b"z9hG4bKs", b"z9hG4bKt"), tls, 0)) == [200]
