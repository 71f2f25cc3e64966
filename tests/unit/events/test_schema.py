"""Event schema v2: what every consumer may rely on, and what breaks the contract."""

from __future__ import annotations

from typing import Any

import pytest

from streamd.events.schema import SCHEMA_VERSION, make_event, validate_event

STREAM = {"stream_id": "c:caller", "call_id": "c", "leg": "caller", "source": "sip", "labels": {}}
SCORED = {"score": 0.9, "smoothed": 0.7, "window": {"start_s": 0.0, "end_s": 4.0}, "model": {}}


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    return make_event(1, type_, STREAM, **fields)


def test_version_is_2() -> None:
    assert SCHEMA_VERSION == 2 and ev("stream.started")["v"] == 2


@pytest.mark.parametrize("type_", ["window.scored", "alert.raised"])
def test_scored_events_carry_raw_score_and_smoothed(type_: str) -> None:
    validate_event(ev(type_, **SCORED))
    with pytest.raises(ValueError, match="smoothed"):
        validate_event(ev(type_, **{k: v for k, v in SCORED.items() if k != "smoothed"}))


def test_alert_cleared_needs_its_reason() -> None:
    validate_event(ev("alert.cleared", **SCORED, reason="score"))
    validate_event(ev("alert.cleared", **SCORED, reason="stream_ended"))
    with pytest.raises(ValueError, match="reason"):
        validate_event(ev("alert.cleared", **SCORED))


def test_acknowledged_names_the_alert_and_who() -> None:
    validate_event(ev("alert.acknowledged", alert_id=12, by="Dana"))
    with pytest.raises(ValueError, match="alert_id"):
        validate_event(ev("alert.acknowledged", by="Dana"))
    with pytest.raises(ValueError, match="by"):
        validate_event(ev("alert.acknowledged", alert_id=12, by=""))


def test_stream_ended_carries_the_final_alert_state() -> None:
    validate_event(ev("stream.ended", summary={}, alert={"raised_at_end": False, "raised": 0}))
    with pytest.raises(ValueError, match="raised_at_end"):
        validate_event(ev("stream.ended", summary={}))


def test_v1_events_are_refused_by_a_v2_validator() -> None:
    old = ev("stream.started")
    old["v"] = 1
    with pytest.raises(ValueError, match="version 1"):
        validate_event(old)
