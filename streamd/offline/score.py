"""Scoring files offline through exactly the daemon's path: hub, VAD, windows, scorer, smoother."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamd.config import Config
from streamd.errors import StreamdError
from streamd.events.bus import EventBus
from streamd.ingest.files import play_audio, play_file
from streamd.model.session import Detector
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.scorer import Scorer


@dataclass
class FileReport:
    path: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def verdict(self) -> str:
        if self.error:
            return "error"
        if not self.windows:
            return "no speech" if not self.summary.get("speech_s") else "not enough speech"
        return "fake" if self.summary.get("alert_raised") else "real"


Clip = tuple[str, np.ndarray, int]  # key, PCM, sample rate
Progress = Callable[[FileReport], None]


async def score_files_async(
    paths: list[str], config: Config, detector: Detector, concurrency: int = 4
) -> list[FileReport]:
    return await _score_async(paths, config, detector, concurrency)


async def score_clips_async(
    clips: list[Clip],
    config: Config,
    detector: Detector,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> list[FileReport]:
    """Like ``score_files_async`` for audio already in memory (eval, codec round trips)."""
    return await _score_async(clips, config, detector, concurrency, progress)


async def _score_async(
    items: Sequence[str | Clip],
    config: Config,
    detector: Detector,
    concurrency: int,
    progress: Progress | None = None,
) -> list[FileReport]:
    keys = [it if isinstance(it, str) else it[0] for it in items]
    bus = EventBus()
    reports = {k: FileReport(k) for k in keys}
    by_stream: dict[str, FileReport] = {}

    def collect(event: dict[str, Any]) -> None:
        rep = by_stream.get(event.get("stream", {}).get("stream_id", ""))
        if rep is None:
            return
        if event["type"] == "window.scored":
            rep.windows.append(event)
        elif event["type"].startswith("alert."):
            rep.alerts.append(event)
        elif event["type"] == "stream.ended":
            rep.summary = event["summary"]

    bus.add_sink(collect)
    scorer = Scorer(detector, config.model.batch_max, config.model.batch_wait_ms)
    await scorer.start()
    hub = StreamHub(config, detector, scorer, bus)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, item: str | Clip) -> None:
        key = item if isinstance(item, str) else item[0]
        async with gate:
            info = StreamInfo.new(
                source="file", leg="file", stream_id=f"file-{i}", labels={"path": key}
            )
            by_stream[info.stream_id] = reports[key]
            try:
                if isinstance(item, str):
                    await play_file(hub, item, realtime=False, info=info)
                else:
                    await play_audio(hub, item[1], item[2], info)
            except StreamdError as exc:
                reports[key].error = str(exc)
            if progress is not None:
                progress(reports[key])

    try:
        await asyncio.gather(*(one(i, it) for i, it in enumerate(items)))
    finally:
        await scorer.close()
    return [reports[k] for k in keys]


def score_files(paths: list[str | Path], config: Config, detector: Detector) -> list[FileReport]:
    return asyncio.run(score_files_async([str(p) for p in paths], config, detector))
