"""Twilio Media Streams: parsing, reordering, gaps, the signature, and fuzzing."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.codecs.g711 import ulaw_decode, ulaw_encode
from streamd.errors import ProtocolError
from streamd.protocols.feeds.base import (
    Audio,
    Disconnect,
    Gap,
    Notice,
    ProtocolViolation,
    StreamClosed,
    StreamOpened,
)
from streamd.protocols.feeds.twilio import (
    Media,
    ReorderBuffer,
    Start,
    TwilioSession,
    UnknownEvent,
    compute_signature,
    parse_message,
    validate_signature,
)

from tests.conftest import tone
from tests.helpers.feed_fuzz import check_events, mutated_json

SID = "MZ" + "a" * 32
CALL = "CA" + "b" * 32
ACCOUNT = "AC" + "c" * 32


def connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start(tracks: list[str] | None = None, **params: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": SID,
            "start": {
                "streamSid": SID,
                "accountSid": ACCOUNT,
                "callSid": CALL,
                "tracks": tracks or ["inbound", "outbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media(
    track: str, chunk: int, payload: bytes, timestamp: int | None = None, seq: int = 2
) -> str:
    ts = (chunk - 1) * 20 if timestamp is None else timestamp
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": SID,
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(ts),
                "payload": base64.b64encode(payload).decode(),
            },
        }
    )


def stop() -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": "99",
            "streamSid": SID,
            "stop": {"accountSid": ACCOUNT, "callSid": CALL},
        }
    )


def speech_like(seconds: float, freq: float) -> bytes:
    """A tone as Twilio would send it: 8 kHz mu-law."""
    return ulaw_encode(tone(freq, seconds, rate=8000, amp=0.4))


def chunks(payload: bytes, size: int = 160) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


def collect(events: list[Any], key: str) -> np.ndarray:
    """The stream as the pipeline would write it: audio, and zeros for each gap."""
    parts = []
    for e in events:
        if isinstance(e, Audio) and e.key == key:
            parts.append(e.samples)
        elif isinstance(e, Gap) and e.key == key:
            parts.append(np.zeros(e.n_samples, np.int16))
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def run(session: TwilioSession, frames: list[str]) -> list[Any]:
    events: list[Any] = []
    for frame in frames:
        events += session.receive_text(frame)
    return events


# -- signature ----------------------------------------------------------------------------------


def test_signature_matches_twilios_published_example() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    # The vector from Twilio's security docs (auth token 12345).
    assert compute_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert validate_signature("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not validate_signature(
        "12345", url, {**params, "Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
    assert not validate_signature("54321", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not validate_signature("12345", url, params, "")
    assert not validate_signature("", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def test_signature_concatenates_sorted_names_and_values() -> None:
    url = "https://example.com/hook"
    expected = base64.b64encode(
        hmac.new(b"tok", (url + "a1a2b3").encode(), hashlib.sha1).digest()
    ).decode()
    assert compute_signature("tok", url, {"b": "3", "a": ["2", "1"]}) == expected
    assert compute_signature("tok", url, [("b", "3"), ("a", "2"), ("a", "1")]) == expected


def test_websocket_signature_is_the_url_with_query_and_either_port_spelling() -> None:
    url = "wss://streamd.example.com/v1/ingest/twilio?tenant=7"
    sig = compute_signature("secret", url)
    assert validate_signature("secret", url, None, sig)
    assert validate_signature(
        "secret", "wss://streamd.example.com:443/v1/ingest/twilio?tenant=7", None, sig
    )
    assert not validate_signature(
        "secret", "wss://streamd.example.com/v1/ingest/twilio?tenant=8", None, sig
    )
    assert not validate_signature(
        "secret", "wss://streamd.example.com:8443/v1/ingest/twilio?tenant=7", None, sig
    )


# -- parsing ------------------------------------------------------------------------------------


def test_parse_each_message_type() -> None:
    st_ = parse_message(start(["inbound"], agent="42"))
    assert isinstance(st_, Start)
    assert (st_.stream_sid, st_.call_sid, st_.account_sid) == (SID, CALL, ACCOUNT)
    assert st_.tracks == ("inbound",) and st_.custom_parameters == {"agent": "42"}
    m = parse_message(media("outbound", 7, b"\xff\x7f\x00"))
    assert isinstance(m, Media)
    assert (m.track, m.chunk, m.timestamp, m.payload, m.stream_sid) == (
        "outbound",
        7,
        120,
        b"\xff\x7f\x00",
        SID,
    )
    dtmf = parse_message(
        json.dumps(
            {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "5"}}
        )
    )
    assert getattr(dtmf, "digit", None) == "5"
    mark = parse_message(
        json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "greeting"}})
    )
    assert getattr(mark, "name", None) == "greeting"
    assert getattr(parse_message(stop()), "call_sid", None) == CALL


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"streamSid": SID}),
        json.dumps(
            {"event": "media", "media": {"track": "inbound", "chunk": "1", "timestamp": "0"}}
        ),
        json.dumps(
            {
                "event": "media",
                "media": {"track": "sideways", "chunk": "1", "timestamp": "0", "payload": ""},
            }
        ),
        json.dumps(
            {
                "event": "media",
                "media": {"track": "inbound", "chunk": "x", "timestamp": "0", "payload": ""},
            }
        ),
        json.dumps(
            {
                "event": "media",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "!!"},
            }
        ),
        json.dumps(
            {"event": "start", "start": {"callSid": CALL, "mediaFormat": {"encoding": "audio/ogg"}}}
        ),
    ],
)
def test_malformed_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        parse_message(frame)


def test_unknown_event_is_its_own_non_fatal_error() -> None:
    with pytest.raises(UnknownEvent) as info:
        parse_message(json.dumps({"event": "transcription", "streamSid": SID}))
    assert not info.value.fatal


# -- the session --------------------------------------------------------------------------------


def test_call_with_both_tracks_reordered_and_duplicated() -> None:
    caller, agent = speech_like(1.0, 220), speech_like(1.0, 330)
    frames = [media("inbound", i + 1, c) for i, c in enumerate(chunks(caller))]
    frames += [media("outbound", i + 1, c) for i, c in enumerate(chunks(agent))]
    rng = random.Random(7)
    # Local shuffles (never more than 3 frames out of place) and some duplicates.
    for i in range(0, len(frames) - 3, 3):
        window = frames[i : i + 3]
        rng.shuffle(window)
        frames[i : i + 3] = window
    frames += [frames[5], frames[60], frames[5]]
    session = TwilioSession(reorder_window=4)
    events = run(session, [connected(), start(agent="42"), *frames, stop()])
    check_events(events)

    opened = {e.key: e for e in events if isinstance(e, StreamOpened)}
    assert opened["inbound"].leg == "caller" and opened["outbound"].leg == "agent"
    assert opened["inbound"].call_id == CALL and opened["inbound"].sample_rate == 8000
    assert opened["inbound"].labels == {
        "agent": "42",
        "callSid": CALL,
        "streamSid": SID,
        "accountSid": ACCOUNT,
        "track": "inbound",
    }
    assert not [e for e in events if isinstance(e, Gap)]
    np.testing.assert_array_equal(collect(events, "inbound"), ulaw_decode(caller))
    np.testing.assert_array_equal(collect(events, "outbound"), ulaw_decode(agent))
    assert session.buffers["inbound"].dropped + session.buffers["outbound"].dropped == 3
    closed = [e for e in events if isinstance(e, StreamClosed)]
    assert sorted((e.key, e.reason) for e in closed) == [("inbound", "stop"), ("outbound", "stop")]
    assert isinstance(events[-1], Disconnect) and events[-1].code == 1000
    assert session.finished and session.receive_text(media("inbound", 999, b"\x00")) == []


def test_a_lost_frame_becomes_silence_of_its_length() -> None:
    audio = chunks(speech_like(0.4, 440))
    frames = [media("inbound", i + 1, c) for i, c in enumerate(audio) if i != 4]
    session = TwilioSession()
    events = run(session, [start(["inbound"]), *frames]) + session.connection_lost()
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.n_samples, g.reason, g.frames) for g in gaps] == [(160, "loss", 1)]
    out = collect(events, "inbound")
    expected = ulaw_decode(b"".join(audio))
    expected[4 * 160 : 5 * 160] = 0
    np.testing.assert_array_equal(out, expected)
    assert session.buffers["inbound"].lost == 1
    assert [e.reason for e in events if isinstance(e, StreamClosed)] == ["disconnect"]


def test_a_timestamp_jump_without_a_missing_chunk_is_a_gap() -> None:
    # Some carriers number chunks densely and only the timestamp shows the hole.
    payload = speech_like(0.02, 300)
    frames = [
        media("inbound", 1, payload, 0),
        media("inbound", 2, payload, 20),
        media("inbound", 3, payload, 540),
    ]
    events = run(TwilioSession(), [start(["inbound"]), *frames])
    assert [e.n_samples for e in events if isinstance(e, Gap)] == [(540 - 40) * 8]


def test_small_timestamp_jitter_is_not_a_gap() -> None:
    payload = speech_like(0.02, 300)
    frames = [
        media("inbound", i + 1, payload, i * 20 + (1 if i % 2 else -1) + 1) for i in range(20)
    ]
    events = run(TwilioSession(), [start(["inbound"]), *frames])
    assert not [e for e in events if isinstance(e, Gap)]
    assert len(collect(events, "inbound")) == 20 * 160


def test_a_frame_that_comes_after_its_slot_was_given_up_is_dropped() -> None:
    payload = speech_like(0.02, 300)
    session = TwilioSession(reorder_window=2)
    events = run(
        session, [start(["inbound"])] + [media("inbound", c, payload) for c in (1, 3, 4, 5, 2)]
    )
    assert session.buffers["inbound"].lost == 1 and session.buffers["inbound"].dropped == 1
    assert len(collect(events, "inbound")) == 5 * 160  # 4 frames and one frame of silence


def test_a_bogus_timestamp_cannot_make_an_endless_gap() -> None:
    payload = speech_like(0.02, 300)
    frames = [media("inbound", 1, payload, 0), media("inbound", 2, payload, 10**12)]
    events = run(TwilioSession(max_gap_s=5), [start(["inbound"]), *frames])
    assert [e.n_samples for e in events if isinstance(e, Gap)] == [5 * 8000]


def test_media_before_start_is_held_then_replayed() -> None:
    payload = speech_like(0.06, 300)
    frames = [media("inbound", i + 1, c) for i, c in enumerate(chunks(payload))]
    session = TwilioSession()
    assert session.receive_text(frames[0]) == []
    events = run(session, [frames[1], start(["inbound"]), frames[2]])
    assert isinstance(events[0], StreamOpened)
    np.testing.assert_array_equal(collect(events, "inbound"), ulaw_decode(payload))


def test_unknown_event_and_bad_json_are_logged_and_the_call_goes_on() -> None:
    payload = speech_like(0.04, 300)
    session = TwilioSession()
    run(session, [start(["inbound"])])
    bad: list[Any] = session.receive_text('{"event": "media", "media": ')
    unknown: list[Any] = session.receive_text(
        json.dumps({"event": "transcription", "streamSid": SID})
    )
    binary = session.receive_bytes(b"\x00\x01")
    for events in (bad, unknown, binary):
        assert len(events) == 1 and isinstance(events[0], ProtocolViolation) and not events[0].fatal
    assert "transcription" in unknown[0].message
    events = run(session, [media("inbound", 1, payload[:160]), media("inbound", 2, payload[160:])])
    assert len(collect(events, "inbound")) == 320 and not session.finished


def test_oversize_frame_ends_the_session() -> None:
    session = TwilioSession(max_message_bytes=1000)
    run(session, [start()])
    events: list[Any] = session.receive_text(media("inbound", 1, b"\x00" * 2000))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ProtocolViolation", "StreamClosed", "StreamClosed", "Disconnect"]
    assert events[0].fatal and events[0].code == 413
    assert events[-1].code == 1009 and session.finished


def test_too_many_bad_frames_end_the_session() -> None:
    session = TwilioSession(max_violations=3)
    events = run(session, [start(["inbound"])] + ["junk"] * 4)
    violations = [e for e in events if isinstance(e, ProtocolViolation)]
    assert [v.fatal for v in violations] == [False, False, False, True]
    assert isinstance(events[-1], Disconnect)


def test_dtmf_and_mark_are_notices() -> None:
    session = TwilioSession()
    run(session, [start(["inbound"])])
    events = session.receive_text(
        json.dumps(
            {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "#"}}
        )
    )
    assert events == [Notice("dtmf", {"digit": "#", "track": "inbound_track"})]


def test_reorder_buffer_waits_for_the_first_chunk_within_the_window() -> None:
    buf = ReorderBuffer("k", window=3)
    one = np.ones(160, np.int16)
    assert buf.push(3, 40, one) == [] and buf.push(2, 20, one * 2) == []
    assert buf.push(2, 20, one * 9) == [] and buf.dropped == 1  # a duplicate while held
    out = buf.push(1, 0, one * 3)
    assert [int(e.samples[0]) for e in out if isinstance(e, Audio)] == [3, 2, 1]


# -- fuzzing ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parser_raises_only_protocol_errors_on_junk(data: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_message(data)


VALID = [
    json.loads(f)
    for f in (start(agent="1"), media("inbound", 3, b"\x01\x02\x03"), stop(), connected())
]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_session_survives_mutated_messages(data: st.DataObject) -> None:
    session = TwilioSession()
    session.receive_text(start())
    for _ in range(data.draw(st.integers(1, 6))):
        frame = data.draw(mutated_json(data.draw(st.sampled_from(VALID))))
        with contextlib.suppress(ProtocolError):
            parse_message(frame)
        check_events(session.receive_text(frame))
    check_events(session.connection_lost())
    assert session.finished and not session.streams


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(0, 2000)), max_size=60), st.integers(1, 8)
)
def test_reorder_buffer_never_emits_a_chunk_twice(
    pushes: list[tuple[int, int]], window: int
) -> None:
    buf = ReorderBuffer("k", window=window)
    emitted: list[int] = []
    for chunk, ts in pushes:
        for e in buf.push(chunk, ts, np.full(160, chunk, np.int16)):
            if isinstance(e, Audio):
                emitted.append(int(e.samples[0]))
    for e in buf.flush():
        if isinstance(e, Audio):
            emitted.append(int(e.samples[0]))
    assert emitted == sorted(set(emitted))
    assert set(emitted) <= {c for c, _ in pushes}
