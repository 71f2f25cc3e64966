"""The helpers and the session base the four feed protocols share."""

from __future__ import annotations

from typing import Any

import pytest

from streamd.errors import ProtocolError
from streamd.protocols.feeds.base import (
    Disconnect,
    FeedError,
    FeedSession,
    ProtocolViolation,
    StreamClosed,
    as_choice,
    as_int,
    clean_labels,
    load_json_object,
    pcm16_frames,
    split_channels,
)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nul",
        "[1]",
        '"s"',
        '{"a": NaN}',
        '{"a": Infinity}',
        "[" * 100_000,
        b"\xff\xfe{}",
        '{"n": ' + "9" * 5000 + "}",
    ],
    ids=["empty", "junk", "list", "string", "nan", "inf", "deep", "bad-utf8", "huge-int"],
)
def test_json_errors_are_protocol_errors(text: Any) -> None:
    with pytest.raises(ProtocolError):
        load_json_object(text, 10**6)


def test_json_size_limit_is_fatal_413_even_for_lenient_callers() -> None:
    with pytest.raises(FeedError) as info:
        load_json_object('{"a": "' + "x" * 100 + '"}', 50, fatal=False)
    assert info.value.fatal and info.value.code == 413 and info.value.close_code == 1009
    assert load_json_object(b'{"a": 1}', 50) == {"a": 1}


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("5", 5), (5.0, 5), ("007", 7)])
def test_as_int_accepts_numbers_and_digit_strings(value: Any, expected: int) -> None:
    assert as_int(value, "x") == expected


@pytest.mark.parametrize(
    "value", [True, "-1", "1.5", 1.5, "", None, [], "1" * 25, "١٢", float("inf"), -3]
)
def test_as_int_rejects(value: Any) -> None:
    with pytest.raises(ProtocolError):
        as_int(value, "x")


def test_as_choice_is_safe_for_unhashable_values() -> None:
    assert as_choice("a", {"a": 1}, "x") == "a"
    bad: Any
    for bad in ([], {}, 1, "b"):
        with pytest.raises(ProtocolError):
            as_choice(bad, {"a": 1}, "x")


def test_labels_are_bounded_scalars() -> None:
    raw: dict[Any, Any] = {
        "a": 1,
        "b": True,
        "c": None,
        "d": {"x": 1},
        "e": [1],
        5: "k",
        "f": "y" * 1000,
    }
    raw.update({f"k{i}": i for i in range(100)})
    labels = clean_labels(raw)
    assert labels["a"] == "1" and labels["b"] == "true" and len(labels["f"]) == 256
    assert not {"c", "d", "e", 5} & set(labels) and len(labels) == 32


def test_pcm16_is_little_endian_and_whole_samples() -> None:
    frames = pcm16_frames(b"\x01\x00\x00\x01\xff\x7f\x00\x80", 2, what="t")
    assert frames.tolist() == [[1, 256], [32767, -32768]]
    left, right = split_channels(frames)
    assert left.flags.c_contiguous and right.tolist() == [256, -32768]
    with pytest.raises(ProtocolError):
        pcm16_frames(b"\x00" * 6, 2, what="t")


class Echo(FeedSession):
    def receive(self, value: str) -> list[Any]:
        return self._run(self._on, value)

    def _on(self, value: str) -> None:
        if value == "open":
            self._open("k", "caller", "c1", {}, 8000)
        elif value == "bad":
            raise FeedError("bad frame", fatal=False)
        elif value == "worse":
            raise ProtocolError("plain protocol errors are fatal")


def test_session_base_turns_errors_into_events() -> None:
    s = Echo(max_violations=1)
    s.receive("open")
    assert s.receive("bad") == [ProtocolViolation("bad frame", False, 400)]
    events = s.receive("bad")
    assert events == [
        ProtocolViolation("bad frame", True, 400),
        StreamClosed("k", "error"),
        Disconnect(1002, "bad frame"),
    ]
    assert s.finished and s.receive("open") == [] and s.connection_lost() == []
    s2 = Echo()
    s2.receive("open")
    assert s2.receive("worse")[0] == ProtocolViolation("plain protocol errors are fatal", True, 400)
