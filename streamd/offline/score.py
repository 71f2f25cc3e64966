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

CPU_BATCH = 4  # offline on a CPU: bigger batches cost memory (AASIST ~300 MB a window), not time


def offline_batch(config: Config, detector: Detector, batch: int | None = None) -> int:
    """Windows per ``session.run`` offline: ``batch`` if given; on a CPU at most CPU_BATCH,
    since a CPU gains little from big batches and the activations grow with them (AASIST at
    model.batch_max 32 held 9+ GB); on a GPU, ``model.batch_max``."""
    if batch is not None:
        return batch
    if detector.provider == "cpu":
        return min(config.model.batch_max, CPU_BATCH)
    return config.model.batch_max


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
Loader = Callable[[], tuple[np.ndarray, int]]
LazyClip = tuple[str, Loader]  # key, and how to get its PCM when its turn comes
Progress = Callable[[FileReport], None]


async def score_files_async(
    paths: list[str],
    config: Config,
    detector: Detector,
    concurrency: int = 4,
    batch: int | None = None,
) -> list[FileReport]:
    return await _score_async(paths, config, detector, concurrency, batch=batch)


async def score_clips_async(
    clips: Sequence[Clip | LazyClip],
    config: Config,
    detector: Detector,
    concurrency: int = 4,
    progress: Progress | None = None,
    batch: int | None = None,
) -> list[FileReport]:
    """Like ``score_files_async`` for audio in memory (codec round trips), or loaded only when its
    turn comes (``(key, loader)``: eval), so at most ``concurrency`` clips are held at once."""
    return await _score_async(clips, config, detector, concurrency, progress, batch)


async def _score_async(
    items: Sequence[str | Clip | LazyClip],
    config: Config,
    detector: Detector,
    concurrency: int,
    progress: Progress | None = None,
    batch: int | None = None,
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
    scorer = Scorer(detector, offline_batch(config, detector, batch), config.model.batch_wait_ms)
    await scorer.start()
    hub = StreamHub(config, detector, scorer, bus)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, item: str | Clip | LazyClip) -> None:
        key = item if isinstance(item, str) else item[0]
        async with gate:
            info = StreamInfo.new(
                source="file", leg="file", stream_id=f"file-{i}", labels={"path": key}
            )
            by_stream[info.stream_id] = reports[key]
            try:
                if isinstance(item, str):
                    await play_file(hub, item, realtime=False, info=info)
                elif len(item) == 2:
                    data, rate = await asyncio.to_thread(item[1])
                    await play_audio(hub, data, rate, info)
                    del data
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


def score_files(
    paths: list[str | Path], config: Config, detector: Detector, batch: int | None = None
) -> list[FileReport]:
    return asyncio.run(score_files_async([str(p) for p in paths], config, detector, batch=batch))
