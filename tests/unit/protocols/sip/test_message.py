"""SIP messages: real INVITEs, compact forms, Via lists, multipart bodies, responses, TCP
framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.sip.headers import parse_name_addr, parse_via, split_list
from streamd.protocols.sip.message import (
    Headers,
    SipError,
    SipRequest,
    SipResponse,
    SipStreamFramer,
    build_response,
    is_keepalive,
    parse_message,
    parse_multipart,
)

from tests.helpers.sip_samples import (
    COMPACT_INVITE,
    OPTIONS_PING,
    SIPREC_METADATA,
    SIPREC_SDP,
    sipp_invite,
    siprec_invite,
)


def test_sipp_invite() -> None:
    message = parse_message(sipp_invite(call=3))
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == ("INVITE", "sip:service@127.0.0.1:5060")
    assert message.call_id == "3-4242@127.0.0.1" and message.cseq == (1, "INVITE")
    assert message.from_tag == "4242SIPpTag003" and message.to_tag is None
    assert message.branch == "z9hG4bK-4242-3-0"
    assert message.content_type == "application/sdp"
    assert message.body.startswith(b"v=0\r\n") and message.body.endswith(b"PCMU/8000\r\n")
    assert message.headers.get("subject") == "Performance Test"
    assert message.to.uri == "sip:service@127.0.0.1:5060" and message.to.display_name == "service"


def test_compact_forms_folding_and_multiple_via() -> None:
    message = parse_message(COMPACT_INVITE)
    vias = message.vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "192.0.2.10", 5060), ("TCP", "proxy.example.com", None),
        ("UDP", "2001:db8::9", 5070),
    ]  # fmt: skip
    assert vias[0].params["received"] == "192.0.2.10" and "rport" in vias[2].params
    assert message.branch == "z9hG4bKnashds8"
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert message.from_.display_name == "Alice, A." and message.from_tag == "1928301774"
    assert message.headers.get_all("Contact") == [
        "<sip:alice@pc33.atlanta.example.com>", '"Mobile, x" <sip:alice@mobile.example.com>',
    ]  # fmt: skip
    assert message.headers.get("Supported") == "timer" and message.headers.get("l") == "0"
    assert "content-length" in message.headers and "Content-Type" not in message.headers


def test_header_names_are_case_insensitive_and_keep_order() -> None:
    headers = Headers([("call-id", "x"), ("VIA", "SIP/2.0/UDP a;branch=1"), ("X-Custom", "1")])
    assert [name for name, _ in headers] == ["Call-ID", "Via", "X-Custom"]
    assert headers.get("I") == "x" and headers.get("x-custom") == "1"
    headers.set("x-CUSTOM", "2")
    assert list(headers)[2] == ("x-CUSTOM", "2") and len(headers) == 3
    headers.remove("v")
    assert "Via" not in headers and headers.get_all("Via") == []


def test_split_list_respects_quotes_and_angles() -> None:
    assert split_list('"a,b" <sip:x;p=1,2>, <sip:y>,, c') == ['"a,b" <sip:x;p=1,2>', "<sip:y>", "c"]


def test_name_addr_forms() -> None:
    quoted = parse_name_addr(r'"Bob \"B\"" <sips:bob@example.com;transport=tls>;tag=abc;x="y;z"')
    assert quoted.display_name == 'Bob "B"' and quoted.uri == "sips:bob@example.com;transport=tls"
    assert quoted.tag == "abc" and quoted.params["x"] == "y;z"
    bare = parse_name_addr("sip:alice@example.com;tag=88")  # addr-spec: params belong to header
    assert bare.uri == "sip:alice@example.com" and bare.tag == "88"
    assert parse_name_addr("tel:+15551230001").uri == "tel:+15551230001"
    for bad in ("<sip:x", '"unterminated <sip:x>', "not a uri", '"x" sip:y', "<sip:a>junk"):
        with pytest.raises(SipError):
            parse_name_addr(bad)


def test_via_received_and_response_target() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx;rport")
    stamped = via.with_received("203.0.113.4", 40123)
    assert (
        stamped.to_value()
        == "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx;rport=40123;received=203.0.113.4"
    )
    assert via.response_target("203.0.113.4", 40123) == ("203.0.113.4", 40123)
    plain = parse_via("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy")
    assert plain.response_target("10.0.0.1", 40123) == ("10.0.0.1", 5060)
    assert parse_via("SIP / 2.0 / udp [::1]:5060").to_value() == "SIP/2.0/UDP [::1]:5060"
    for bad in (
        "SIP/2.0/UDP",
        "SIP/3.0/UDP h",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP ::1",
        "SIP/2.0/UDP h;=x",
    ):
        with pytest.raises(SipError):
            parse_via(bad)


def test_response_line_and_reason_with_spaces() -> None:
    message = parse_message(
        b"SIP/2.0 481 Call/Transaction Does Not Exist\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Call-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason, message.cseq) == (
        481,
        "Call/Transaction Does Not Exist",
        (2, "BYE"),
    )


def test_siprec_invite_multipart_body() -> None:
    message = parse_message(siprec_invite())
    assert message.content_type == "multipart/mixed"
    parts = message.body_parts()
    assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
    assert parts[0].body.decode() == SIPREC_SDP
    assert parts[1].body.decode() == SIPREC_METADATA
    assert parts[1].headers.get("Content-Disposition") == "recording-session"
    assert message.headers.get_all("Accept") == ["application/sdp", "application/rs-metadata+xml"]


def test_multipart_edge_cases() -> None:
    body = (
        b"preamble\r\n--b\r\n\r\nno headers\r\n--b\n"
        b"Content-Type: Text/Plain\n\nlf only\n--b--\r\nepilogue"
    )
    parts = parse_multipart(body, 'multipart/mixed; boundary="b"')
    assert [(p.content_type, p.body) for p in parts] == [
        ("text/plain", b"no headers"),
        ("text/plain", b"lf only"),
    ]
    with pytest.raises(SipError, match="closing"):
        parse_multipart(b"--b\r\n\r\nx\r\n", "multipart/mixed;boundary=b")
    with pytest.raises(SipError):
        parse_multipart(b"", "multipart/mixed")
    single = parse_message(sipp_invite()).body_parts()
    assert [p.content_type for p in single] == ["application/sdp"]


def test_content_length_rules() -> None:
    extra = sipp_invite() + b"trailing junk after the datagram's body"
    assert parse_message(extra).body.endswith(b"PCMU/8000\r\n")  # RFC 3261 §18.3: ignored
    short = sipp_invite()[:-5]
    with pytest.raises(SipError, match="shorter"):
        parse_message(short)
    no_length = OPTIONS_PING.replace(b"Content-Length: 0\r\n", b"")
    assert parse_message(no_length).body == b""
    with pytest.raises(SipError, match="required"):
        parse_message(no_length, require_content_length=True)
    with pytest.raises(SipError, match="conflicting"):
        parse_message(
            OPTIONS_PING.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 3\r\n")
        )


def test_udp_keepalives_are_recognised() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and is_keepalive(b"\x00")
    assert not is_keepalive(OPTIONS_PING)
    with pytest.raises(SipError, match="empty"):
        parse_message(b"\r\n\r\n")


def test_max_message_size() -> None:
    with pytest.raises(SipError, match="larger"):
        parse_message(sipp_invite(), max_size=100)


@pytest.mark.parametrize(
    "data",
    [
        b"", b"\r\n\r\n", b"INVITE sip:x SIP/3.0\r\n\r\n", b"INVITE  sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 99 Too Low\r\n\r\n", b"INVITE sip:x SIP/2.0\r\nNoColonHere\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nVia: \xff\xfe\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
    ],
)  # fmt: skip
def test_malformed_messages(data: bytes) -> None:
    with pytest.raises(SipError):
        parse_message(data)


def test_missing_required_headers_raise_on_access() -> None:
    message = parse_message(b"OPTIONS sip:x SIP/2.0\r\nCSeq: one OPTIONS\r\n\r\n")
    for name in ("call_id", "cseq", "branch", "from_tag"):
        with pytest.raises(SipError):
            getattr(message, name)


def test_build_response_copies_dialog_headers_and_adds_to_tag() -> None:
    request = parse_message(COMPACT_INVITE)
    assert isinstance(request, SipRequest)
    response = build_response(request, 200, to_tag="as83kd9",
                              headers=[("Contact", "<sip:streamd@192.0.2.5>")],
                              body=b"v=0\r\n")  # fmt: skip
    data = response.to_bytes()
    assert data.startswith(b"SIP/2.0 200 OK\r\n")
    reparsed = parse_message(data)
    assert isinstance(reparsed, SipResponse)
    assert reparsed.headers.get_all("Via") == request.headers.get_all("Via")
    assert reparsed.to_tag == "as83kd9" and reparsed.from_tag == "1928301774"
    assert reparsed.call_id == request.call_id and reparsed.cseq == (314159, "INVITE")
    assert reparsed.headers.get("Record-Route") == "<sip:proxy.example.com;lr>"
    assert reparsed.content_type == "application/sdp" and reparsed.body == b"v=0\r\n"
    assert reparsed.headers.get("Content-Length") == "5"
    trying = build_response(request, 100)
    assert trying.reason == "Trying" and parse_message(trying.to_bytes()).to_tag is None
    assert "Record-Route" not in trying.headers
    stamped = build_response(request, 200, source=("198.51.100.99", 5099)).headers.get_all("Via")
    assert stamped[0] == (
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;received=198.51.100.99"
    )
    assert stamped[1:] == request.headers.get_all("Via")[1:]
    busy = build_response(request, 486, to_tag="t")
    assert (busy.reason, busy.to.tag) == ("Busy Here", "t")


def test_build_response_keeps_an_existing_to_tag() -> None:
    bye = parse_message(sipp_invite().replace(
        b"To: service <sip:service@127.0.0.1:5060>",
        b"To: service <sip:service@127.0.0.1:5060>;tag=ours"))  # fmt: skip
    assert isinstance(bye, SipRequest)
    assert build_response(bye, 200, to_tag="other").to_tag == "ours"


def test_stream_framer_splits_coalesced_and_partial_messages() -> None:
    stream = OPTIONS_PING + sipp_invite() + b"\r\n\r\n" + siprec_invite()
    for chunk_size in (1, 7, 100, len(stream)):
        framer = SipStreamFramer()
        frames: list[bytes] = []
        for start in range(0, len(stream), chunk_size):
            frames += framer.feed(stream[start : start + chunk_size])
        assert frames == [OPTIONS_PING, sipp_invite(), siprec_invite()]
        assert framer.keepalives == 1
        assert [parse_message(f, require_content_length=True).cseq[1] for f in frames] == [
            "OPTIONS",
            "INVITE",
            "INVITE",
        ]


def test_stream_framer_compact_length_and_errors() -> None:
    assert SipStreamFramer().feed(COMPACT_INVITE) == [COMPACT_INVITE]
    framer = SipStreamFramer()
    with pytest.raises(SipError, match="Content-Length"):
        framer.feed(OPTIONS_PING.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SipError):  # broken for good: the next message boundary is unknown
        framer.feed(OPTIONS_PING)
    with pytest.raises(SipError, match="larger"):
        SipStreamFramer(max_message_size=200).feed(sipp_invite())
    with pytest.raises(SipError, match="longer"):
        SipStreamFramer(max_message_size=100).feed(b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30)


def _check(data: bytes) -> None:
    try:
        message = parse_message(data)
    except ProtocolError as exc:
        assert isinstance(exc, SipError)
        return
    for accessor in (
        "call_id",
        "cseq",
        "from_tag",
        "to_tag",
        "vias",
        "branch",
        "content_type",
        "body_parts",
    ):
        try:
            value = getattr(message, accessor)
            if callable(value):
                value()
        except ProtocolError as exc:
            assert isinstance(exc, SipError)
    if isinstance(message, SipRequest):
        try:
            parse_message(build_response(message, 200, to_tag="x").to_bytes())
        except ProtocolError as exc:
            assert isinstance(exc, SipError)


@settings(max_examples=400)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)


SEEDS = [sipp_invite(), siprec_invite(), COMPACT_INVITE, OPTIONS_PING]


@settings(max_examples=600)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4000), st.sampled_from([
        b"", b":", b";", b",", b"<", b">", b'"', b"\r\n", b" ", b"\xff", b"--", b"=", b"0",
        b"9" * 12,
    ])), min_size=1, max_size=5),
)  # fmt: skip
def test_fuzz_structured_mutations(seed: bytes, edits: list[tuple[int, bytes]]) -> None:
    data = seed
    for position, insert in edits:
        position %= len(data)
        data = data[:position] + insert + data[position + (1 if insert == b"" else 0) :]
    _check(data)


@settings(max_examples=200)
@given(chunks=st.lists(st.binary(max_size=80), max_size=10), seed=st.sampled_from(SEEDS))
def test_fuzz_stream_framer(chunks: list[bytes], seed: bytes) -> None:
    framer = SipStreamFramer(max_message_size=4096)
    try:
        for chunk in [seed, *chunks, seed]:
            for frame in framer.feed(chunk):
                _check(frame)
    except ProtocolError as exc:
        assert isinstance(exc, SipError)
