"""The events of one stream, end to end: one name per quantity, and every alert closed at the
end."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.config import parse_config
from streamd.events.bus import EventBus
from streamd.events.schema import validate_event
from streamd.ingest.files import play_audio
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.scorer import Scorer


async def events_of(
    models: Path, audio: np.ndarray, alerts: dict[str, Any]
) -> list[dict[str, Any]]:
    cfg = parse_config(
        {"model": {"dir": str(models), "providers": ["cpu"]}, "alerts": alerts}, "test", environ={}
    )
    detector = Detector.load(resolve_manifest(models, "tiny"), ["cpu"])
    events: list[dict[str, Any]] = []
    bus = EventBus()
    bus.add_sink(events.append)
    scorer = Scorer(detector, 8, 5)
    await scorer.start()
    try:
        hub = StreamHub(cfg, detector, scorer, bus)
        info = StreamInfo.new(source="file", leg="caller", call_id="c1")
        await play_audio(hub, audio, 16000, info)
    finally:
        await scorer.close()
    for e in events:
        validate_event(e)
    return events


async def test_alert_still_raised_at_the_end_is_cleared_with_reason_stream_ended(
    tiny_model_dir: Path, speech_16k: np.ndarray
) -> None:
    # raise at 0: every window is above it, so the alert goes up and never clears by score
    events = await events_of(
        tiny_model_dir, speech_16k[: 12 * 16000], {"raise": 0.0, "clear": 0.0, "raise_after": 2}
    )
    kinds = [e["type"] for e in events]
    assert kinds[0] == "stream.started" and kinds[-2:] == ["alert.cleared", "stream.ended"]
    assert kinds.count("alert.raised") == 1 and kinds.count("alert.cleared") == 1
    cleared, ended = events[-2], events[-1]
    assert cleared["reason"] == "stream_ended"
    assert ended["alert"] == {"raised_at_end": True, "raised": 1}
    assert ended["summary"]["alert_raised"] is True
    # one name for one thing: the alert's score and smoothed are those of the window that raised it
    raised = next(e for e in events if e["type"] == "alert.raised")
    at = [e for e in events if e["type"] == "window.scored" and e["window"] == raised["window"]]
    assert len(at) == 1
    assert raised["score"] == at[0]["score"] and raised["smoothed"] == at[0]["smoothed"]
    # the clear at the end reports the last window
    last = [e for e in events if e["type"] == "window.scored"][-1]
    assert cleared["window"] == last["window"] and cleared["score"] == last["score"]


async def test_a_stream_without_an_open_alert_just_ends(
    tiny_model_dir: Path, speech_16k: np.ndarray
) -> None:
    events = await events_of(tiny_model_dir, speech_16k[: 8 * 16000], {"raise": 1.0, "clear": 0.5})
    kinds = [e["type"] for e in events]
    assert "alert.raised" not in kinds and "alert.cleared" not in kinds
    assert kinds[-1] == "stream.ended"
    assert events[-1]["alert"] == {"raised_at_end": False, "raised": 0}


@pytest.mark.parametrize("raise_after", [1])
async def test_window_scored_score_is_the_raw_p_fake(
    tiny_model_dir: Path, speech_16k: np.ndarray, raise_after: int
) -> None:
    events = await events_of(
        tiny_model_dir,
        speech_16k[: 8 * 16000],
        {"raise": 1.0, "clear": 0.5, "method": "mean", "n": 2, "raise_after": raise_after},
    )
    scored = [e for e in events if e["type"] == "window.scored"]
    assert len(scored) >= 2
    # with a mean over the last 2 windows, smoothed is the mean of the raw scores: both are what
    # their names say
    for prev, cur in itertools.pairwise(scored):
        assert cur["smoothed"] == pytest.approx((prev["score"] + cur["score"]) / 2, abs=2e-6)
