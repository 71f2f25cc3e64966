"""Asterisk AudioSocket: framing across reads, frame kinds, rates, errors, fuzzing."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.feeds.audiosocket import (
    AudioSocketSession,
    Frame,
    Framer,
    Kind,
    build_frame,
    describe_error,
)
from streamd.protocols.feeds.base import (
    Audio,
    Disconnect,
    Notice,
    ProtocolViolation,
    StreamClosed,
    StreamOpened,
)

from tests.conftest import tone
from tests.helpers.feed_fuzz import check_events

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def slin(seconds: float, rate: int = 8000) -> np.ndarray:
    return (tone(440, seconds, rate) * 32767).astype(np.int16)


def call_bytes(samples: np.ndarray, kind: int = Kind.SLIN, frame_samples: int = 160) -> bytes:
    """What Asterisk writes: the UUID, 20 ms slin frames, DTMF, hangup."""
    out = [build_frame(Kind.UUID, CALL.bytes)]
    for i in range(0, len(samples), frame_samples):
        out.append(build_frame(kind, samples[i : i + frame_samples].astype("<i2").tobytes()))
    out += [build_frame(Kind.DTMF, b"7"), build_frame(Kind.HANGUP)]
    return b"".join(out)


def feed_in_pieces(session: AudioSocketSession, data: bytes, sizes: list[int]) -> list[Any]:
    events: list[Any] = []
    pos = 0
    for size in sizes:
        events += session.receive_data(data[pos : pos + size])
        pos += size
    events += session.receive_data(data[pos:])
    return events


def test_build_frame_layout() -> None:
    assert build_frame(Kind.HANGUP) == b"\x00\x00\x00"
    assert build_frame(Kind.DTMF, b"7") == b"\x03\x00\x017"
    assert build_frame(Kind.SLIN, b"\x01\x02" * 200)[:3] == b"\x10\x01\x90"  # big-endian 400
    with pytest.raises(ValueError):
        build_frame(Kind.SLIN, b"\x00" * 70000)


def test_a_call_read_one_byte_at_a_time() -> None:
    samples = slin(0.1)
    session = AudioSocketSession()
    data = call_bytes(samples)
    events = feed_in_pieces(session, data, [1] * len(data))
    check_events(events)
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert [(o.key, o.leg, o.call_id, o.sample_rate, o.labels) for o in opened] == [
        ("audio", "caller", str(CALL), 8000, {"uuid": str(CALL)})
    ]
    audio = np.concatenate([e.samples for e in events if isinstance(e, Audio)])
    np.testing.assert_array_equal(audio, samples)
    assert Notice("dtmf", {"digit": "7"}) in events
    assert [e.reason for e in events if isinstance(e, StreamClosed)] == ["hangup"]
    assert isinstance(events[-1], Disconnect) and session.finished


@pytest.mark.parametrize(
    ("kind", "rate"), [(Kind.SLIN12, 12000), (Kind.SLIN16, 16000), (Kind.SLIN48, 48000)]
)
def test_higher_rates_come_from_the_kind(kind: int, rate: int) -> None:
    session = AudioSocketSession(leg="agent")
    events = session.receive_data(call_bytes(slin(0.04, rate), kind, rate // 50))
    (opened,) = [e for e in events if isinstance(e, StreamOpened)]
    assert (opened.sample_rate, opened.leg) == (rate, "agent")
    assert sum(len(e.samples) for e in events if isinstance(e, Audio)) == len(slin(0.04, rate))


def test_error_frame_ends_the_stream_with_its_meaning() -> None:
    session = AudioSocketSession()
    session.receive_data(build_frame(Kind.UUID, CALL.bytes) + build_frame(Kind.SLIN, b"\x00\x00"))
    events = session.receive_data(build_frame(Kind.ERROR, b"\x03"))
    (closed,) = [e for e in events if isinstance(e, StreamClosed)]
    assert "hangup of calling party" in closed.reason and "frame forwarding error" in closed.reason
    assert describe_error(b"") == "error (no code)"


def fatal(events: list[Any], code: int) -> None:
    violation = next(e for e in events if isinstance(e, ProtocolViolation))
    assert violation.fatal and violation.code == code
    assert isinstance(events[-1], Disconnect)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (build_frame(Kind.SLIN, b"\x00\x00"), 409),  # audio before the UUID
        (build_frame(Kind.UUID, b"\x01" * 15), 400),
        (build_frame(Kind.UUID, CALL.bytes) + build_frame(0x42, b"x"), 400),
        (build_frame(Kind.UUID, CALL.bytes) + build_frame(Kind.SLIN, b"\x00\x00\x00"), 400),
        (build_frame(Kind.UUID, CALL.bytes) + build_frame(Kind.UUID, uuid.uuid4().bytes), 409),
        (
            build_frame(Kind.UUID, CALL.bytes)
            + build_frame(Kind.SLIN, b"\0\0")
            + build_frame(Kind.SLIN16, b"\0\0"),
            415,
        ),
    ],
    ids=["audio-first", "short-uuid", "unknown-kind", "odd-audio", "uuid-change", "rate-change"],
)
def test_protocol_errors_end_the_session(data: bytes, code: int) -> None:
    fatal(AudioSocketSession().receive_data(data), code)


def test_oversize_header_is_refused_before_buffering() -> None:
    session = AudioSocketSession(max_payload=1024)
    events = session.receive_data(b"\x10\x10\x00" + b"\x00" * 10)
    fatal(events, 413)
    assert session.framer.pending < 100


def test_repeated_uuid_is_fine_and_connection_loss_closes() -> None:
    session = AudioSocketSession()
    frame = build_frame(Kind.UUID, CALL.bytes)
    events = session.receive_data(frame + frame + build_frame(Kind.SLIN, b"\x01\x00"))
    assert [type(e).__name__ for e in events] == ["StreamOpened", "Audio"]
    assert session.receive_data(b"\x10\x00") == [] and session.framer.pending == 2
    assert [e.reason for e in session.connection_lost() if isinstance(e, StreamClosed)] == [
        "disconnect"
    ]


# -- fuzzing ------------------------------------------------------------------------------------

frames = st.lists(
    st.tuples(st.sampled_from([0x01, 0x03, 0x10, 0x12, 0x42, 0xFF]), st.binary(max_size=64)).map(
        lambda t: Frame(t[0], t[1])
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(0, 40), max_size=20))
def test_framer_reassembles_any_split(sent: list[Frame], sizes: list[int]) -> None:
    data = b"".join(build_frame(f.kind, f.payload) for f in sent)
    framer = Framer()
    got: list[Frame] = []
    pos = 0
    for size in [*sizes, len(data)]:
        got += framer.feed(data[pos : pos + size])
        pos += size
    assert got == sent and framer.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_framer_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Framer(max_payload=128).feed(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            frames.map(lambda fs: b"".join(build_frame(f.kind, f.payload) for f in fs)),
        ),
        max_size=6,
    )
)
def test_session_survives_anything(chunks: list[bytes]) -> None:
    session = AudioSocketSession(max_payload=256)
    for chunk in [build_frame(Kind.UUID, CALL.bytes), *chunks]:
        check_events(session.receive_data(chunk))
    check_events(session.connection_lost())
    assert not session.streams
