"""Genesys AudioHook v2: the open transaction, audio, pause/resume, close, errors, fuzzing."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.codecs.g711 import ulaw_decode, ulaw_encode
from streamd.errors import ProtocolError
from streamd.protocols.feeds.audiohook import (
    NULL_UUID,
    AudioHookSession,
    check_auth,
    choose_media,
    format_duration,
    parse_duration,
    parse_message,
)
from streamd.protocols.feeds.base import (
    Audio,
    Disconnect,
    Gap,
    Notice,
    ProtocolViolation,
    Reply,
    StreamClosed,
    StreamOpened,
)

from tests.conftest import tone
from tests.helpers.feed_fuzz import check_events, mutated_json

SESSION = "e160e428-53e2-487c-977d-96989bf5c99d"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
PARTICIPANT = "883efee8-3d6c-4537-b500-6d7ca4b92fa0"
HEADERS = {
    "Audiohook-Session-Id": SESSION,
    "Audiohook-Organization-Id": ORG,
    "Audiohook-Correlation-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "X-API-KEY": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
}
STEREO_PCMU = {
    "type": "audio",
    "format": "PCMU",
    "channels": ["external", "internal"],
    "rate": 8000,
}
MONO_PCMU = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
STEREO_L16 = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}


class Client:
    """What Genesys does: numbered messages with serverseq and position."""

    def __init__(self, session: AudioHookSession) -> None:
        self.session = session
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0

    def send(
        self, type_: str, parameters: dict[str, Any] | None = None, **override: Any
    ) -> list[Any]:
        self.seq += 1
        msg = {
            "version": "2",
            "id": SESSION,
            "type": type_,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": format_duration(self.position),
            "parameters": parameters or {},
        }
        msg.update(override)
        return self.track(self.session.receive_text(json.dumps(msg)))

    def audio(self, data: bytes, channels: int = 2, width: int = 1) -> list[Any]:
        self.position += len(data) / (channels * width) / 8000
        return self.track(self.session.receive_bytes(data))

    def track(self, events: list[Any]) -> list[Any]:
        check_events(events)
        for e in events:
            if isinstance(e, Reply):
                self.serverseq = e.message["seq"]
        return events

    def open(
        self, media: list[dict[str, Any]] | None = None, conversation: str = CONVERSATION
    ) -> list[Any]:
        return self.send(
            "open",
            {
                "organizationId": ORG,
                "conversationId": conversation,
                "participant": {
                    "id": PARTICIPANT,
                    "ani": "+13175550123",
                    "aniName": "John Doe",
                    "dnis": "+13175550199",
                },
                "media": media or [MONO_PCMU, STEREO_L16, STEREO_PCMU],
                "language": "en-US",
            },
        )


def replies(events: list[Any]) -> list[dict[str, Any]]:
    return [e.message for e in events if isinstance(e, Reply)]


def stereo_pcmu(left: np.ndarray, right: np.ndarray) -> bytes:
    return np.stack(
        [np.frombuffer(ulaw_encode(left), np.uint8), np.frombuffer(ulaw_encode(right), np.uint8)], 1
    ).tobytes()


def opened_client(**kwargs: Any) -> Client:
    client = Client(AudioHookSession(headers=HEADERS, **kwargs))
    client.open()
    return client


# -- durations and helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT12.34S", 12.34),
        ("PT0S", 0.0),
        ("PT.5S", 0.5),
        ("PT5.S", 5.0),
        ("PT1M2.5S", 62.5),
        ("PT1H", 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["PT", "12.3", "PT-1S", "P1D", "PT1.2.3S", "pt1s", "PTS", 5, None])
def test_bad_durations_are_protocol_errors(text: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_duration(text)


@given(st.decimals(min_value=0, max_value=10**6, places=6))
def test_duration_round_trip(value: Any) -> None:
    text = format_duration(float(value))
    assert text.startswith("PT") and text.endswith("S")
    assert parse_duration(text) == pytest.approx(float(value), abs=1e-6)


def test_media_choice_prefers_stereo_then_pcmu() -> None:
    assert choose_media([MONO_PCMU, STEREO_L16, STEREO_PCMU]).to_json() == STEREO_PCMU  # type: ignore[union-attr]
    assert choose_media([MONO_PCMU, STEREO_L16]).to_json() == STEREO_L16  # type: ignore[union-attr]
    odd = [
        {**STEREO_PCMU, "rate": 16000},
        {**MONO_PCMU, "format": "PCMA"},
        {**MONO_PCMU, "channels": ["x"]},
        7,
    ]
    assert choose_media(odd) is None
    assert choose_media([*odd, MONO_PCMU]).to_json() == MONO_PCMU  # type: ignore[union-attr]


def test_check_auth() -> None:
    keys = ["k1", HEADERS["X-API-KEY"]]
    assert check_auth(HEADERS, api_keys=keys, allowed_orgs=[ORG.upper()]) is None
    lower = {k.lower(): v for k, v in HEADERS.items()}
    assert check_auth(lower, api_keys=keys) is None
    assert "not one of" in (check_auth({**HEADERS, "X-API-KEY": "nope"}, api_keys=keys) or "")
    assert "missing X-API-KEY" in (
        check_auth({"Audiohook-Session-Id": SESSION}, api_keys=keys) or ""
    )
    other_org = "0a1b2c3d-0000-4000-8000-000000000000"
    assert "allow list" in (check_auth(HEADERS, api_keys=keys, allowed_orgs=[other_org]) or "")
    assert "Session-Id" in (check_auth({"X-API-KEY": "k1"}, api_keys=keys) or "")


# -- a whole session ----------------------------------------------------------------------------


def test_open_audio_ping_close() -> None:
    client = Client(AudioHookSession(headers=HEADERS))
    events = client.open()
    (opened,) = replies(events)
    assert opened == {
        "version": "2",
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "id": SESSION,
        "parameters": {"media": [STEREO_PCMU], "startPaused": False},
    }
    streams = {e.key: e for e in events if isinstance(e, StreamOpened)}
    assert {k: s.leg for k, s in streams.items()} == {"external": "caller", "internal": "agent"}
    labels = streams["external"].labels
    assert labels["conversationId"] == CONVERSATION and labels["organizationId"] == ORG
    assert (labels["ani"], labels["aniName"], labels["dnis"]) == (
        "+13175550123",
        "John Doe",
        "+13175550199",
    )
    assert (
        labels["correlationId"] == HEADERS["Audiohook-Correlation-Id"]
        and labels["channel"] == "external"
    )
    assert streams["internal"].call_id == CONVERSATION and streams["internal"].sample_rate == 8000

    customer, agent = tone(300, 0.5, 8000, 0.3), tone(500, 0.5, 8000, 0.3)
    out: dict[str, list[np.ndarray]] = {"external": [], "internal": []}
    data = stereo_pcmu(customer, agent)
    for i in range(0, len(data), 1600):  # 100 ms frames
        for e in client.audio(data[i : i + 1600]):
            assert isinstance(e, Audio)
            out[e.key].append(e.samples)
    np.testing.assert_array_equal(
        np.concatenate(out["external"]), ulaw_decode(ulaw_encode(customer))
    )
    np.testing.assert_array_equal(np.concatenate(out["internal"]), ulaw_decode(ulaw_encode(agent)))
    assert client.session.position == pytest.approx(0.5)

    (pong,) = replies(client.send("ping", {"rtt": "PT0.05S"}))
    assert (pong["type"], pong["seq"], pong["clientseq"]) == ("pong", 2, 2)

    events = client.send("close", {"reason": "end"})
    assert [m["type"] for m in replies(events)] == ["closed"]
    assert replies(events)[0]["clientseq"] == 3 and replies(events)[0]["seq"] == 3
    assert sorted((e.key, e.reason) for e in events if isinstance(e, StreamClosed)) == [
        ("external", "end"),
        ("internal", "end"),
    ]
    assert isinstance(events[-1], Disconnect) and events[-1].code == 1000
    assert client.session.state == "closed"


def test_pause_and_resume_become_a_gap_of_the_discarded_audio() -> None:
    client = opened_client()
    silence = stereo_pcmu(np.zeros(800, np.int16), np.zeros(800, np.int16))
    client.audio(silence)
    (pause,) = replies(client.session.pause())
    assert (pause["type"], pause["seq"]) == ("pause", 2)
    events = client.send("paused")
    assert [e.kind for e in events if isinstance(e, Notice)] == ["paused"]
    assert client.session.state == "paused"
    (resume,) = replies(client.session.resume())
    assert resume["type"] == "resume" and resume["clientseq"] == 2
    events = client.send(
        "resumed", {"start": format_duration(client.position), "discarded": "PT2.5S"}
    )
    gaps = [e for e in events if isinstance(e, Gap)]
    assert sorted((g.key, g.n_samples, g.reason) for g in gaps) == [
        ("external", 20000, "pause"),
        ("internal", 20000, "pause"),
    ]
    assert [len(e.samples) for e in client.audio(silence)] == [800, 800]


def test_audio_while_paused_is_an_error() -> None:
    client = opened_client()
    client.send("paused")
    events = client.audio(b"\xff" * 320)
    (disconnect,) = replies(events)
    assert disconnect["type"] == "disconnect" and disconnect["parameters"]["reason"] == "error"
    assert disconnect["parameters"]["info"].startswith("409")


def test_discarded_is_a_gap() -> None:
    client = opened_client()
    events = client.send("discarded", {"start": "PT0S", "discarded": "PT0.25S"})
    assert sorted((g.key, g.n_samples, g.reason) for g in events if isinstance(g, Gap)) == [
        ("external", 2000, "discarded"),
        ("internal", 2000, "discarded"),
    ]


def test_mono_l16_is_little_endian() -> None:
    client = Client(AudioHookSession(headers=HEADERS))
    client.open([{"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}])
    assert [s.key for s in client.session.streams.values()] == ["internal"]
    (audio,) = client.audio(b"\x01\x00\x00\x01\xff\xff", channels=1, width=2)
    assert audio.key == "internal" and audio.samples.tolist() == [1, 256, -1]


def test_connection_probe_opens_no_stream() -> None:
    client = Client(AudioHookSession(headers=HEADERS))
    events = client.open(conversation=NULL_UUID)
    assert [m["type"] for m in replies(events)] == ["opened"]
    assert not [e for e in events if isinstance(e, StreamOpened)]
    assert [e.kind for e in events if isinstance(e, Notice)] == ["probe"]
    assert client.audio(b"\xff" * 320) == []


def test_start_paused_requested_before_open() -> None:
    session = AudioHookSession(headers=HEADERS)
    assert session.pause() == []
    client = Client(session)
    (opened,) = replies(client.open())
    assert opened["parameters"]["startPaused"] is True


# -- errors -------------------------------------------------------------------------------------


def assert_disconnected(events: list[Any], reason: str, code: int, close_code: int) -> None:
    (message,) = replies(events)
    assert message["type"] == "disconnect"
    assert message["parameters"]["reason"] == reason
    assert message["parameters"]["info"].startswith(str(code))
    violation = next(e for e in events if isinstance(e, ProtocolViolation))
    assert violation.fatal and violation.code == code
    assert (
        isinstance(events[-1], Disconnect)
        and events[-1].code == close_code
        and events[-1].grace_s > 0
    )


def test_binary_before_open_disconnects_then_close_is_still_answered() -> None:
    client = Client(AudioHookSession(headers=HEADERS))
    assert_disconnected(client.audio(b"\xff" * 160), "error", 409, 1002)
    assert client.session.finished and client.session.state == "disconnecting"
    assert client.audio(b"\xff" * 160) == []
    events = client.send("close", {"reason": "error"})
    assert [(m["type"], m["seq"], m["clientseq"]) for m in replies(events)] == [("closed", 2, 1)]
    assert client.session.state == "closed"


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[]",
        json.dumps(
            {
                "version": "1",
                "id": SESSION,
                "type": "open",
                "seq": 1,
                "serverseq": 0,
                "position": "PT0S",
                "parameters": {},
            }
        ),
        json.dumps(
            {
                "version": "2",
                "id": "nope",
                "type": "open",
                "seq": 1,
                "serverseq": 0,
                "position": "PT0S",
                "parameters": {},
            }
        ),
        json.dumps(
            {
                "version": "2",
                "id": SESSION,
                "type": "open",
                "seq": 1,
                "serverseq": 0,
                "position": "0",
                "parameters": {},
            }
        ),
        json.dumps(
            {
                "version": "2",
                "id": SESSION,
                "type": "open",
                "seq": 1,
                "serverseq": 0,
                "position": "PT0S",
            }
        ),
    ],
)
def test_malformed_messages_disconnect_with_400(frame: str) -> None:
    events = AudioHookSession(headers=HEADERS).receive_text(frame)
    assert_disconnected(events, "error", 400, 1002)


def test_unknown_message_type_disconnects() -> None:
    client = opened_client()
    events = client.send("dance")
    assert_disconnected(events, "error", 400, 1002)
    assert "dance" in replies(events)[0]["parameters"]["info"]
    assert sorted(e.reason for e in events if isinstance(e, StreamClosed)) == ["error", "error"]


@pytest.mark.parametrize(
    "override",
    [{"seq": 5}, {"seq": 1}, {"serverseq": 9}, {"id": "11111111-2222-4333-8444-555555555555"}],
    ids=["seq-skip", "seq-repeat", "serverseq-ahead", "id-mismatch"],
)
def test_sequence_and_identity_errors_disconnect(override: dict[str, Any]) -> None:
    client = opened_client()
    assert_disconnected(client.send("ping", **override), "error", 400, 1002)


def test_organization_mismatch_is_unauthorized() -> None:
    client = Client(
        AudioHookSession(
            headers={**HEADERS, "Audiohook-Organization-Id": "0a1b2c3d-0000-4000-8000-000000000000"}
        )
    )
    assert_disconnected(client.open(), "unauthorized", 401, 1008)
    client = Client(
        AudioHookSession(headers=HEADERS, allowed_orgs=["0a1b2c3d-0000-4000-8000-000000000000"])
    )
    assert_disconnected(client.open(), "unauthorized", 401, 1008)


def test_no_acceptable_media_is_415() -> None:
    client = Client(AudioHookSession(headers=HEADERS))
    assert_disconnected(client.open([{**STEREO_PCMU, "format": "opus"}]), "error", 415, 1002)


def test_oversize_frames_are_413() -> None:
    client = opened_client(max_binary_bytes=1000)
    assert_disconnected(client.audio(b"\xff" * 1002), "error", 413, 1009)
    client = opened_client(max_text_bytes=1000)
    assert_disconnected(client.send("update", {"language": "x" * 1200}), "error", 413, 1009)


def test_partial_stereo_sample_is_an_error() -> None:
    client = opened_client()
    assert_disconnected(client.audio(b"\xff" * 161), "error", 400, 1002)


def test_client_error_message_is_logged_not_fatal() -> None:
    client = opened_client()
    events = client.send("error", {"code": 408, "message": "Timeout waiting for pong"})
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation) and not events[0].fatal
    assert "408" in events[0].message and not client.session.finished


def test_connection_lost_closes_the_streams() -> None:
    client = opened_client()
    events = client.session.connection_lost()
    assert sorted(e.reason for e in events if isinstance(e, StreamClosed)) == [
        "disconnect",
        "disconnect",
    ]


# -- fuzzing ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parser_raises_only_protocol_errors(data: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_message(data)


def _valid(type_: str, seq: int, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "2",
        "id": SESSION,
        "type": type_,
        "seq": seq,
        "serverseq": 1,
        "position": "PT1.5S",
        "parameters": parameters,
    }


VALID = [
    _valid(
        "open",
        1,
        {
            "organizationId": ORG,
            "conversationId": CONVERSATION,
            "participant": {"id": PARTICIPANT, "ani": "1", "aniName": "a", "dnis": "2"},
            "media": [STEREO_PCMU, MONO_PCMU],
        },
    ),
    _valid("ping", 2, {"rtt": "PT0.1S"}),
    _valid("paused", 2, {}),
    _valid("resumed", 3, {"start": "PT1S", "discarded": "PT2S"}),
    _valid("close", 2, {"reason": "end"}),
]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_session_survives_anything(data: st.DataObject) -> None:
    session = AudioHookSession(headers=HEADERS)
    sent_seqs: list[int] = []
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["mutated", "text", "binary"]))
        if kind == "binary":
            events = session.receive_bytes(data.draw(st.binary(max_size=400)))
        elif kind == "text":
            events = session.receive_text(data.draw(st.text(max_size=200)))
        else:
            events = session.receive_text(
                data.draw(mutated_json(data.draw(st.sampled_from(VALID))))
            )
        check_events(events)
        sent_seqs += [e.message["seq"] for e in events if isinstance(e, Reply)]
    check_events(session.connection_lost())
    assert sent_seqs == list(range(1, len(sent_seqs) + 1))  # server seq counts from 1, no holes
