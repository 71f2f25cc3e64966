"""RTP header parsing: fields, CSRC/extension/padding, RTCP on the RTP port, wrap, fuzzing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.rtp import (
    RtpError,
    RtpPacket,
    SequenceUnwrapper,
    TimestampUnwrapper,
    build_rtp,
    is_rtcp,
    parse_rtp,
)

from tests.helpers.rtp_samples import SIPP_PCAP, pcap_udp_payloads


def test_fixed_header_fields() -> None:
    data = bytes.fromhex("80 08 1234 000000a0 deadbeef") + b"\xd5" * 160
    packet = parse_rtp(data)
    assert packet == RtpPacket(
        payload_type=8, sequence=0x1234, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xd5" * 160
    )
    assert not is_rtcp(data)


def test_marker_csrc_extension_padding_together() -> None:
    payload = bytes(range(40))
    data = build_rtp(
        96, 65535, 2**32 - 1, 7, payload, marker=True, csrcs=(1, 2, 3),
        extension_profile=0xBEDE, extension=b"\x10\xff\x00\x00", padding=4,
    )  # fmt: skip
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    packet = parse_rtp(data)
    assert packet.marker and packet.payload_type == 96
    assert packet.sequence == 65535 and packet.timestamp == 2**32 - 1
    assert packet.csrcs == (1, 2, 3)
    assert packet.extension_profile == 0xBEDE and packet.extension == b"\x10\xff\x00\x00"
    assert packet.padding == 4 and packet.payload == payload


def test_empty_payload_and_extension_without_words() -> None:
    packet = parse_rtp(build_rtp(0, 1, 2, 3, extension_profile=0x1000))
    assert packet.payload == b"" and packet.extension_profile == 0x1000 and packet.extension == b""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "too short"),
        (bytes.fromhex("40000001000000000000000a") + b"x", "version"),
        (bytes.fromhex("a0000001000000000000000a") + b"abc\x00", "pad count of 0"),
        (bytes.fromhex("a0000001000000000000000a") + b"ab\x09", "padding"),
        (bytes.fromhex("83000001000000000000000a") + b"\x00" * 8, "CSRC"),
        (bytes.fromhex("90000001000000000000000a") + b"\xbe\xde", "extension"),
        (bytes.fromhex("90000001000000000000000a") + b"\xbe\xde\x00\x02" + b"\x00" * 4, "extension length"),  # noqa: E501
        (bytes.fromhex("b0000001000000000000000a") + b"\xbe\xde\x00\x01" + b"\x00" * 3 + b"\x04", "extension length"),  # noqa: E501
    ],
)  # fmt: skip
def test_malformed_packets_raise_rtp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtp(data)


def test_rtcp_multiplexed_on_rtp_port_is_recognised() -> None:
    sender_report = bytes.fromhex("80c80006") + bytes(24)
    receiver_report = bytes.fromhex("81c90007") + bytes(28)
    assert is_rtcp(sender_report) and is_rtcp(receiver_report)
    with pytest.raises(RtpError, match="RTCP"):
        parse_rtp(sender_report)
    # Marker set with PT 72..76 is exactly the RTCP byte range (RFC 5761 §4).
    assert is_rtcp(build_rtp(72, 1, 1, 1, b"x", marker=True))
    assert not is_rtcp(build_rtp(72, 1, 1, 1, b"x"))
    assert not is_rtcp(b"\x80")


def test_build_rejects_impossible_headers() -> None:
    with pytest.raises(RtpError):
        build_rtp(128, 0, 0, 0)
    with pytest.raises(RtpError):
        build_rtp(0, 0, 0, 0, csrcs=list(range(16)))
    with pytest.raises(RtpError):
        build_rtp(0, 0, 0, 0, extension_profile=1, extension=b"abc")


@pytest.mark.skipif(not SIPP_PCAP.exists(), reason="sip-tester's g711a.pcap is not installed")
def test_real_sipp_pcap_packets() -> None:
    packets = [parse_rtp(p) for p in pcap_udp_payloads(SIPP_PCAP)]
    assert len(packets) > 100
    assert {p.payload_type for p in packets} == {8}
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert {len(p.payload) for p in packets} == {240}  # sipp's sample uses 30 ms packets
    for a, b in itertools.pairwise(packets):
        assert (b.sequence - a.sequence) & 0xFFFF == 1
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 240
        assert a.ssrc == b.ssrc


def test_sequence_unwrap_across_wrap_with_reordering() -> None:
    unwrap = SequenceUnwrapper()
    got = [unwrap.unwrap(s) for s in (65533, 65534, 0, 65535, 1, 2)]
    assert got == [65533, 65534, 65536, 65535, 65537, 65538]
    assert unwrap.highest == 65538


def test_sequence_unwrap_backwards_before_start() -> None:
    unwrap = SequenceUnwrapper()
    assert [unwrap.unwrap(s) for s in (0, 65535, 1)] == [0, -1, 1]


def test_extend_does_not_move_the_reference() -> None:
    unwrap = SequenceUnwrapper()
    unwrap.unwrap(100)
    assert unwrap.extend(30000) == 30000
    assert unwrap.highest == 100
    assert unwrap.extend(40000) == 40000 - 65536  # closer going backwards
    unwrap.reset()
    assert unwrap.highest is None and unwrap.unwrap(5) == 5


def test_timestamp_unwrap_across_32_bit_wrap() -> None:
    unwrap = TimestampUnwrapper()
    start = 2**32 - 320
    got = [unwrap.unwrap((start + 160 * i) & 0xFFFFFFFF) for i in range(5)]
    assert got == [start + 160 * i for i in range(5)]
    assert got[-1] > 2**32


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    ext=st.one_of(st.none(), st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)
def test_build_parse_roundtrip(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool,
    csrcs: list[int], ext: bytes | None, padding: int,
) -> None:  # fmt: skip
    if marker and 64 <= pt <= 95:
        pt = 0  # those bytes are RTCP under RFC 5761
    data = build_rtp(
        pt, seq, ts, ssrc, payload, marker=marker, csrcs=csrcs,
        extension_profile=None if ext is None else 0xBEDE, extension=ext or b"", padding=padding,
    )  # fmt: skip
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        pt,
        seq,
        ts,
        ssrc,
    )
    assert packet.payload == payload and packet.marker == marker
    assert packet.csrcs == tuple(csrcs) and packet.padding == padding
    assert packet.extension == (ext or b"")


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except ProtocolError as exc:
        assert isinstance(exc, RtpError)
        return
    assert len(packet.payload) <= len(data) - 12


@settings(max_examples=500)
@given(
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 70),
)
def test_fuzz_mutated_valid_packets(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(
        build_rtp(
            0, 1, 2, 3, b"\xff" * 20, csrcs=(9,), extension_profile=1, extension=bytes(8), padding=3
        )
    )
    for index, value in flips:
        data[index % len(data)] = value
    data = data[: len(data) - cut % len(data)]
    try:
        packet = parse_rtp(bytes(data))
    except RtpError:
        return
    assert packet.payload_type < 128 and len(packet.csrcs) <= 15
