"""Audio files played as live streams: real-time pacing by default, or as fast as possible."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import StreamdError
from streamd.ingest.base import Source
from streamd.pipeline.audio import StreamInfo, read_audio
from streamd.pipeline.hub import StreamHub

log = logging.getLogger("streamd.ingest.files")

CHUNK_S = 0.02


async def play_file(
    hub: StreamHub, path: str | Path, realtime: bool = True, info: StreamInfo | None = None
) -> dict[str, Any]:
    """Play one file into the hub as one stream and return its ``stream.ended`` summary."""
    data, rate = await asyncio.to_thread(read_audio, path)
    p = Path(path)
    info = info or StreamInfo.new(
        source="file", leg="file", labels={"path": str(p), "name": p.name}
    )
    return await play_audio(hub, data, rate, info, realtime)


async def play_audio(
    hub: StreamHub, data: np.ndarray, rate: int, info: StreamInfo, realtime: bool = False
) -> dict[str, Any]:
    """Play PCM already in memory as one stream (files, eval clips, codec round trips)."""
    stream = hub.open_stream(info, rate, realtime=realtime)
    chunk = max(1, int(rate * CHUNK_S))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reason = "shutdown"  # unless the whole file plays
    try:
        for i, start in enumerate(range(0, len(data), chunk)):
            stream.write(data[start : start + chunk])
            if realtime:
                delay = t0 + (start + chunk) / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 50 == 49:
                await asyncio.sleep(0)
        reason = "end of file"
    finally:
        summary = await stream.close(reason)
    return summary


class FileSource(Source):
    name = "files"

    def __init__(self, paths: list[str], as_fast_as_possible: bool = False) -> None:
        self.paths = list(paths)
        self.realtime = not as_fast_as_possible
        self._tasks: list[asyncio.Task[Any]] = []
        self.failed: list[str] = []
        self.finished = 0

    async def start(self, hub: StreamHub) -> None:
        await super().start(hub)
        self._tasks = [asyncio.create_task(self._play(p), name=f"file:{p}") for p in self.paths]

    async def _play(self, path: str) -> None:
        try:
            await play_file(self.hub, path, self.realtime)
        except StreamdError as exc:
            self.failed.append(path)
            log.error("file source: %s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed.append(path)
            log.exception("file source: %s failed", path)
        finally:
            self.finished += 1

    @property
    def done(self) -> bool:
        return all(t.done() for t in self._tasks)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for t in self._tasks:
            if not t.done():
                t.cancel()
        await self.wait()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "up": True,
            "files": len(self.paths),
            "finished": self.finished,
            "failed": self.failed,
        }
