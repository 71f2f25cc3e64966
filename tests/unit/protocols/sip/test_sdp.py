"""SDP parsing and RFC 3264 answers: codec choice, static types, hold, labels, rejections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.sip.sdp import Codec, SdpError, build_answer, parse_sdp

from tests.helpers.sip_samples import SIPP_OFFER, SIPREC_SDP


def offer(*media: str, session: str = "c=IN IP4 203.0.113.9\r\n") -> str:
    return "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\n" + session + "t=0 0\r\n" + "".join(media)


def test_sipp_offer() -> None:
    sdp = parse_sdp(SIPP_OFFER.encode())
    assert sdp.origin.username == "user1" and sdp.origin.session_id == 53655765
    (m,) = sdp.media
    assert (m.media, m.port, m.proto, m.connection) == ("audio", 6000, "RTP/AVP", "127.0.0.1")
    assert m.codecs() == [Codec(0, "PCMU", 8000)] and m.direction == "sendrecv"


def test_static_payload_types_need_no_rtpmap() -> None:
    m = parse_sdp(offer("m=audio 4000 RTP/AVP 0 8 9 18 11\r\n")).media[0]
    assert [(c.payload_type, c.encoding, c.clock_rate, c.channels) for c in m.codecs()] == [
        (0, "PCMU", 8000, 1), (8, "PCMA", 8000, 1), (9, "G722", 8000, 1),
        (18, "G729", 8000, 1), (11, "L16", 44100, 1),
    ]  # fmt: skip


def test_rtpmap_fmtp_ptime_label_and_unknown_dynamic_types() -> None:
    m = parse_sdp(offer(
        "m=audio 4000 RTP/AVP 111 96 97 98\r\n",
        "a=rtpmap:111 opus/48000/2\r\n",
        "a=fmtp:111 minptime=10;useinbandfec=1\r\n",
        "a=rtpmap:96 L16/16000/2\r\n",
        "a=rtpmap:97 telephone-event/48000\r\n",
        "a=ptime:20\r\n", "a=label:caller-leg\r\n", "a=mid:a1\r\n", "a=x-vendor\r\n",
    )).media[0]  # fmt: skip
    assert m.codecs() == [
        Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
        Codec(96, "L16", 16000, 2),
        Codec(97, "telephone-event", 48000),
    ]  # 98 has no rtpmap and no static meaning: left out
    assert m.ptime == 20.0 and m.label == "caller-leg" and m.mid == "a1"
    assert m.attribute("x-vendor") == "" and m.attribute("absent") is None


def test_connection_at_media_level_overrides_session() -> None:
    sdp = parse_sdp(
        offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\n", "m=audio 4002 RTP/AVP 0\r\n")
    )
    assert [m.connection for m in sdp.media] == ["10.9.9.9", "203.0.113.9"]
    ipv6 = parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP6 2001:db8::1\r\n"))
    assert ipv6.media[0].connection == "2001:db8::1" and ipv6.media[0].addrtype == "IP6"
    with pytest.raises(SdpError, match="no c= line"):
        parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n", session=""))
    # A rejected m-line (port 0) may lack a connection.
    assert parse_sdp(offer("m=audio 0 RTP/AVP 0\r\n", session="")).media[0].connection is None


def test_bare_lf_line_ends_are_accepted() -> None:
    assert parse_sdp(SIPP_OFFER.replace("\r\n", "\n")).media[0].port == 6000


def test_answer_picks_first_supported_in_offer_order_and_keeps_dtmf() -> None:
    sdp = parse_sdp(offer(
        "m=audio 5004 RTP/AVP 18 8 0 101\r\n", "a=rtpmap:101 telephone-event/8000\r\n",
        "a=fmtp:101 0-16\r\n", "a=ptime:30\r\n", "a=label:7\r\n",
    ))  # fmt: skip
    answer = build_answer(sdp, "192.0.2.5", [40000])
    (media,) = answer.media
    assert media.accepted and media.codec == Codec(8, "PCMA", 8000)
    assert media.telephone_event == Codec(101, "telephone-event", 8000, 1, "0-16")
    assert (media.local_port, media.direction, media.label) == (40000, "recvonly", "7")
    assert (media.remote_address, media.remote_port) == ("203.0.113.9", 5004)
    text = answer.to_text()
    assert "m=audio 40000 RTP/AVP 8 101\r\n" in text
    for line in ("a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
                 "a=ptime:30", "a=recvonly", "a=label:7", "c=IN IP4 192.0.2.5"):  # fmt: skip
        assert line + "\r\n" in text
    assert text.startswith("v=0\r\no=streamd ") and text.endswith("\r\n")
    reparsed = parse_sdp(text)
    assert reparsed.media[0].codecs()[0] == Codec(8, "PCMA", 8000)


def test_answer_for_wideband_and_opus_offers() -> None:
    sdp = parse_sdp(offer(
        "m=audio 5004 RTP/AVP 111 101\r\n", "a=rtpmap:111 opus/48000/2\r\n",
        "a=rtpmap:101 telephone-event/8000\r\n",
        "m=audio 5006 RTP/AVP 96\r\n", "a=rtpmap:96 L16/16000\r\n",
        "m=audio 5008 RTP/AVP 9\r\n",
    ))  # fmt: skip
    answer = build_answer(sdp, "192.0.2.5", [40000, 40002, 40004])
    assert [m.codec.encoding if m.codec else None for m in answer.media] == ["opus", "L16", "G722"]
    # telephone-event at 8000 does not go with a 48 kHz codec.
    assert answer.media[0].telephone_event is None
    assert "a=rtpmap:111 opus/48000/2" in answer.to_text()


def test_supported_list_restricts_and_can_pin_rates() -> None:
    sdp = parse_sdp(offer("m=audio 5004 RTP/AVP 96 0\r\n", "a=rtpmap:96 L16/44100/2\r\n"))
    first = build_answer(sdp, "192.0.2.5", [40000]).media[0].codec
    assert first is not None and first.encoding == "L16"
    pinned = build_answer(sdp, "192.0.2.5", [40000], ["L16/16000", "PCMU"]).media[0].codec
    assert pinned is not None and pinned.encoding == "PCMU"


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "recvonly"),
        ("sendonly", "recvonly"),
        ("recvonly", "inactive"),
        ("inactive", "inactive"),
    ],
)
def test_direction_answers_including_hold(offered: str, answered: str) -> None:
    media_level = parse_sdp(offer(f"m=audio 5004 RTP/AVP 0\r\na={offered}\r\n"))
    session_level = parse_sdp(
        offer("m=audio 5004 RTP/AVP 0\r\n", session=f"c=IN IP4 1.2.3.4\r\na={offered}\r\n")
    )
    for sdp in (media_level, session_level):
        answer = build_answer(sdp, "192.0.2.5", [40000])
        assert answer.media[0].direction == answered
        assert f"a={answered}\r\n" in answer.to_text()


def test_unusable_mlines_are_rejected_with_port_zero() -> None:
    sdp = parse_sdp(offer(
        "m=audio 5004 RTP/AVP 18 3\r\n",  # G.729 and GSM only
        "m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        "m=audio 5008 RTP/SAVP 0\r\n",  # SRTP: we cannot decrypt
        "m=audio 0 RTP/AVP 0\r\n",  # already rejected by the offerer
        "m=audio 5010 RTP/AVP 0\r\na=label:keep\r\n",
        "m=audio 5012 RTP/AVP 0\r\n",  # we pass port 0: no resources
    ))  # fmt: skip
    answer = build_answer(sdp, "192.0.2.5", [40000, 40002, 40004, 40006, 40008, 0])
    assert [m.accepted for m in answer.media] == [False, False, False, False, True, False]
    lines = [line for line in answer.to_text().split("\r\n") if line.startswith("m=")]
    assert lines == [
        "m=audio 0 RTP/AVP 18 3", "m=video 0 RTP/AVP 96", "m=audio 0 RTP/SAVP 0",
        "m=audio 0 RTP/AVP 0", "m=audio 40008 RTP/AVP 0", "m=audio 0 RTP/AVP 0",
    ]  # fmt: skip
    assert answer.accepted_any
    none = build_answer(parse_sdp(offer("m=audio 5004 RTP/AVP 18\r\n")), "192.0.2.5", [40000])
    assert not none.accepted_any


def test_answer_port_list_must_match() -> None:
    with pytest.raises(ValueError, match="m-lines"):
        build_answer(parse_sdp(SIPP_OFFER), "192.0.2.5", [])


def test_ipv6_answer() -> None:
    text = build_answer(parse_sdp(SIPP_OFFER), "2001:db8::5", [40000], session_version=3).to_text()
    assert "c=IN IP6 2001:db8::5\r\n" in text and "o=streamd 0 3 IN IP6 2001:db8::5\r\n" in text


def test_siprec_offer_two_labelled_sendonly_streams() -> None:
    sdp = parse_sdp(SIPREC_SDP)
    assert [m.label for m in sdp.media] == ["1", "2"]
    answer = build_answer(sdp, "192.0.2.5", [40000, 40002])
    assert [(m.label, m.local_port, m.direction) for m in answer.media] == [
        ("1", 40000, "recvonly"), ("2", 40002, "recvonly"),
    ]  # fmt: skip
    assert [m.codec.encoding for m in answer.media if m.codec] == ["PCMU", "PCMA"]


@pytest.mark.parametrize(
    "text",
    [
        "", "o=- 1 1 IN IP4 1.2.3.4\r\n", "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        offer("m=audio 70000 RTP/AVP 0\r\n"), offer("m=audio 5000 RTP/AVP\r\n"),
        offer("m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"),
        offer("m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/0\r\n"),
        offer("m=audio 5000 RTP/AVP 0\r\n", session="c=IN IP4\r\n"),
        offer("m=audio 5000 RTP/AVP 0\r\nthis is not sdp\r\n"),
        "v=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 0\r\n",  # no o=
        offer("m=audio ٥٠٠٠ RTP/AVP 0\r\n"),  # Unicode digits are not SDP digits
    ],
)  # fmt: skip
def test_malformed_sdp_raises_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)


def test_non_utf8_and_oversized_input() -> None:
    with pytest.raises(SdpError, match="UTF-8"):
        parse_sdp(b"v=0\r\ns=\xff\r\n")
    with pytest.raises(SdpError, match="larger"):
        parse_sdp(SIPP_OFFER + "a=x\r\n" * 20000)


def _check(data: str | bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except ProtocolError as exc:
        assert isinstance(exc, SdpError)
        return
    answer = build_answer(sdp, "192.0.2.5", [40000] * len(sdp.media))
    parse_sdp(answer.to_text())  # our own answers always parse


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_fuzz_text(text: str) -> None:
    _check("v=0\r\n" + text)


@settings(max_examples=500)
@given(st.data())
def test_fuzz_structured_mutations(data: st.DataObject) -> None:
    lines = SIPREC_SDP.split("\r\n")
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "edit", "insert"]))
        if action == "drop" and len(lines) > 1:
            lines.pop(index)
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "edit" and lines[index]:
            pos = data.draw(st.integers(0, len(lines[index]) - 1))
            char = data.draw(st.characters(codec="utf-8"))
            lines[index] = lines[index][:pos] + char + lines[index][pos + 1 :]
        else:
            lines.insert(
                index,
                data.draw(
                    st.sampled_from(
                        ["a=rtpmap:", "m=audio 1 RTP/AVP 999", "c=IN IP4 ", "a=sendonly", "o="]
                    )
                ),
            )
    _check("\r\n".join(lines))
