"""FreeSWITCH mod_audio_fork: metadata, L16 mono/mixed/stereo frames, errors, fuzzing."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.feeds.audiofork import AudioForkSession, parse_metadata, rate_from
from streamd.protocols.feeds.base import (
    Audio,
    Disconnect,
    Notice,
    ProtocolViolation,
    StreamClosed,
    StreamOpened,
)

from tests.conftest import tone
from tests.helpers.feed_fuzz import check_events, mutated_json

CALL = "7dd5e34e-5db4-4edb-a166-757e5d29b941"


def pcm(samples: np.ndarray) -> np.ndarray:
    return (samples * 32767).astype(np.int16)


def collect(events: list[Any]) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for e in events:
        if isinstance(e, Audio):
            out.setdefault(e.key, []).append(e.samples)
    return {k: np.concatenate(v) for k, v in out.items()}


def test_stereo_16k_from_metadata() -> None:
    session = AudioForkSession()  # config defaults: 8 kHz mono
    meta = {
        "callId": CALL,
        "from": "2061236666",
        "to": "6173333456",
        "mixType": "stereo",
        "sampleRate": 16000,
    }
    events = session.receive_text(json.dumps(meta))
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert [(o.key, o.leg, o.sample_rate, o.call_id) for o in opened] == [
        ("caller", "caller", 16000, CALL),
        ("agent", "agent", 16000, CALL),
    ]
    assert opened[0].labels["from"] == "2061236666" and opened[0].labels["mix"] == "stereo"
    caller, callee = pcm(tone(300, 0.2, 16000)), pcm(tone(700, 0.2, 16000))
    wire = np.stack([caller, callee], 1).astype("<i2").tobytes()
    events = []
    for i in range(0, len(wire), 640):  # 10 ms frames of 2 channels
        events += session.receive_bytes(wire[i : i + 640])
    check_events(events)
    out = collect(events)
    np.testing.assert_array_equal(out["caller"], caller)
    np.testing.assert_array_equal(out["agent"], callee)
    assert session.samples == len(caller)


def test_binary_without_metadata_uses_config_defaults() -> None:
    session = AudioForkSession(sample_rate=8000, mix="mixed")
    events = session.receive_bytes(b"\x01\x00\x00\x01")
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert (opened.leg, opened.sample_rate, len(opened.call_id)) == ("mixed", 8000, 32)
    assert isinstance(events[1], Audio) and events[1].samples.tolist() == [1, 256]
    assert session.receive_text('{"event": "dtmf", "digit": "5"}') == [
        Notice("text", {"event": "dtmf", "digit": "5"})
    ]


def test_non_json_metadata_is_kept_as_text() -> None:
    session = AudioForkSession(call_id="fs-1")
    events = session.receive_text("caller=alice;callee=bob")
    opened = events[0]
    assert isinstance(opened, StreamOpened) and opened.call_id == "fs-1"
    assert opened.labels == {"metadata": "caller=alice;callee=bob", "mix": "mono"}


@pytest.mark.parametrize(
    ("value", "rate"), [("8k", 8000), ("16K", 16000), ("16000", 16000), (8000, 8000)]
)
def test_rate_spellings(value: Any, rate: int) -> None:
    assert rate_from(value) == rate


@pytest.mark.parametrize("value", ["44100", "32k", True, None, "fast"])
def test_bad_rates(value: Any) -> None:
    with pytest.raises(ProtocolError):
        rate_from(value)


def fatal(events: list[Any], code: int, close_code: int) -> None:
    violation = events[0]
    assert isinstance(violation, ProtocolViolation) and violation.fatal and violation.code == code
    assert isinstance(events[-1], Disconnect) and events[-1].code == close_code


def test_odd_byte_count_ends_the_session() -> None:
    session = AudioForkSession()
    session.receive_bytes(b"\x00\x00")
    events = session.receive_bytes(b"\x00\x00\x00")
    fatal(events, 400, 1002)
    assert [e.reason for e in events if isinstance(e, StreamClosed)] == ["error"]
    assert session.finished and session.receive_bytes(b"\x00\x00") == []


def test_stereo_frame_must_hold_whole_sample_pairs() -> None:
    session = AudioForkSession(mix="stereo")
    fatal(session.receive_bytes(b"\x00" * 6), 400, 1002)


def test_oversize_frame() -> None:
    session = AudioForkSession(max_frame_bytes=640)
    fatal(session.receive_bytes(b"\x00" * 642), 413, 1009)


def test_unsupported_rate_in_metadata() -> None:
    session = AudioForkSession()
    fatal(session.receive_text(json.dumps({"sampleRate": 44100})), 415, 1002)


def test_oversize_metadata() -> None:
    session = AudioForkSession(max_text_bytes=100)
    fatal(session.receive_text(json.dumps({"x": "y" * 200})), 413, 1009)


def test_connection_drop_ends_the_streams() -> None:
    session = AudioForkSession(mix="stereo")
    session.receive_text("{}")
    events = session.connection_lost()
    assert sorted((e.key, e.reason) for e in events if isinstance(e, StreamClosed)) == [
        ("agent", "disconnect"),
        ("caller", "disconnect"),
    ]


def test_config_must_name_a_mix() -> None:
    with pytest.raises(ValueError):
        AudioForkSession(mix="quad")


# -- fuzzing ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_metadata_parser_raises_only_protocol_errors(data: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        assert isinstance(parse_metadata(data), dict)


META = {"callId": CALL, "mixType": "stereo", "sampleRate": "16k", "to": "100"}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_session_survives_anything(data: st.DataObject) -> None:
    session = AudioForkSession(mix=data.draw(st.sampled_from(["mono", "mixed", "stereo"])))
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.booleans()):
            events = session.receive_bytes(data.draw(st.binary(max_size=300)))
        else:
            events = session.receive_text(
                data.draw(st.one_of(st.text(max_size=100), mutated_json(META)))
            )
        check_events(events)
    check_events(session.connection_lost())
    assert not session.streams
