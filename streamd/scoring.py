"""Scoring files offline through exactly the daemon's path: hub, VAD, windows, scorer, smoother."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamd.audio import StreamInfo
from streamd.config import Config
from streamd.errors import StreamdError
from streamd.events.bus import EventBus
from streamd.ingest.files import play_file
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.scorer import Scorer
from streamd.runtime.session import Detector


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


async def score_files_async(
    paths: list[str], config: Config, detector: Detector, concurrency: int = 4
) -> list[FileReport]:
    bus = EventBus()
    reports = {p: FileReport(p) for p in paths}
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

    async def one(i: int, path: str) -> None:
        async with gate:
            info = StreamInfo.new(source="file", leg="file", stream_id=f"file-{i}", labels={"path": path})
            by_stream[info.stream_id] = reports[path]
            try:
                await play_file(hub, path, realtime=False, info=info)
            except StreamdError as exc:
                reports[path].error = str(exc)

    try:
        await asyncio.gather(*(one(i, p) for i, p in enumerate(paths)))
    finally:
        await scorer.close()
    return [reports[p] for p in paths]


def score_files(paths: list[str | Path], config: Config, detector: Detector) -> list[FileReport]:
    return asyncio.run(score_files_async([str(p) for p in paths], config, detector))
