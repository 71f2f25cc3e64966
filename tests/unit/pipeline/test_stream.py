"""A stream on its own, driven through the narrow StreamSink with no hub, scorer or bus."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from streamd.config.sections import AlertsConfig, VadConfig
from streamd.export.probe_audio import speechlike
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.scorer import Score
from streamd.pipeline.stream import StreamPipeline, StreamSettings


class RecordingSink:
    """Scores every window ``p_fake`` (or never, when ``None``) and records every call."""

    def __init__(self, p_fake: float | None) -> None:
        self.p_fake = p_fake
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.queued: list[np.ndarray] = []
        self.scored: list[float] = []
        self.alerts: list[str] = []
        self.ended_streams: list[StreamPipeline] = []
        self.cuts: list[str] = []

    def submit(
        self, samples: np.ndarray, stream: str | None = None, speech_end: int | None = None
    ) -> asyncio.Future[Score]:
        fut: asyncio.Future[Score] = asyncio.get_running_loop().create_future()
        if self.p_fake is not None:
            fut.set_result(Score(self.p_fake, (0.0, 0.0), 1, 0.001, 0.001))
        self.queued.append(samples)
        return fut

    def publish(self, event_type: str, stream: dict[str, Any], **fields: Any) -> None:
        self.events.append((event_type, {"stream": stream, **fields}))

    def window_queued(self, stream: StreamPipeline) -> None:
        pass

    def window_scored(self, stream: StreamPipeline, score: Score) -> None:
        self.scored.append(score.p_fake)

    def alert(self, stream: StreamPipeline, kind: str) -> None:
        self.alerts.append(kind)

    def stream_cut(self, stream: StreamPipeline, reason: str) -> None:
        self.cuts.append(reason)

    def ended(self, stream: StreamPipeline) -> None:
        self.ended_streams.append(stream)


SETTINGS = StreamSettings(
    VadConfig(aggressiveness=0),
    AlertsConfig(raise_after=2),
    windows=(2.0, 1.0, 1.0),
    thresholds=(0.5, 0.4),
)


def open_stream(sink: RecordingSink) -> StreamPipeline:
    return StreamPipeline(StreamInfo.new(source="test", leg="caller"), 16000, SETTINGS, sink)


async def test_windows_scores_alerts_and_end_go_to_the_sink() -> None:
    sink = RecordingSink(0.9)
    stream = open_stream(sink)
    audio = speechlike(6 * 16000, seed=1).astype(np.float32)
    for start in range(0, len(audio), 320):  # 20 ms writes, as a transport delivers them
        stream.write(audio[start : start + 320])
    summary = await stream.close("done")

    types = [t for t, _ in sink.events]
    assert types[-1] == "stream.ended" and types.count("stream.ended") == 1
    scored = [e for t, e in sink.events if t == "window.scored"]
    assert len(scored) == len(sink.queued) == len(sink.scored) >= 4
    assert all(e["score"] == 0.9 and e["stream"] == stream.stream_json for e in scored)
    assert types.count("alert.raised") == 1
    assert types.index("alert.raised") == 2  # after the second window: raise_after=2
    # still raised at the end: closed by alert.cleared (reason stream_ended) before stream.ended
    assert sink.alerts == ["raised", "cleared"] and types[-2] == "alert.cleared"
    assert sink.events[-2][1]["reason"] == "stream_ended"
    assert summary["windows"] == len(scored) and summary["alert_raised"] is True
    assert sink.events[-1][1]["summary"] == summary
    assert sink.ended_streams == [stream] and sink.cuts == []
    stream.write(audio[:320])  # a closed stream takes no more audio
    assert len(sink.queued) == len(scored)


async def test_abort_ends_without_waiting_for_scores() -> None:
    sink = RecordingSink(None)  # the scorer never answers
    stream = open_stream(sink)
    stream.write(speechlike(4 * 16000, seed=2).astype(np.float32))
    assert sink.queued, "4 s of speech queues at least one window"
    summary = await asyncio.wait_for(stream.abort("grace over"), 5)
    assert summary["reason"] == "grace over" and summary["windows"] == 0
    assert [t for t, _ in sink.events] == ["stream.ended"]
    assert sink.ended_streams == [stream]


async def test_a_live_stream_faster_than_real_time_is_cut_through_the_sink() -> None:
    sink = RecordingSink(0.1)
    settings = StreamSettings(
        VadConfig(aggressiveness=0), AlertsConfig(), (2.0, 1.0, 1.0), (0.5, 0.4), max_lead_s=1.0
    )
    stream = StreamPipeline(StreamInfo.new(source="test", leg="caller"), 16000, settings, sink)
    stream.write(speechlike(3 * 16000, seed=3).astype(np.float32))  # 3 s at once: 2 s too early
    for _ in range(100):
        if sink.ended_streams:
            break
        await asyncio.sleep(0.01)
    assert sink.cuts == ["faster_than_real_time"] and stream.cut_reason == "faster_than_real_time"
    assert sink.ended_streams == [stream]
    ended = [e for t, e in sink.events if t == "stream.ended"]
    assert len(ended) == 1 and ended[0]["summary"]["reason"] == "faster_than_real_time"
