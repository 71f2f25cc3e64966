"""Audio files played as live streams: real-time pacing by default, or as fast as possible.

Files are decoded in blocks (``soundfile.blocks``), and played faster than real time only as
fast as the scorer takes their windows, so memory does not grow with a file's length: an hour
of audio costs what a minute does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import AudioError, ConfigError, StreamdError
from streamd.ingest.base import Source
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.stream import StreamPipeline

log = logging.getLogger("streamd.ingest.files")

CHUNK_S = 0.02  # what one write() carries, as a network source would
BLOCK_S = 1.0  # what one decode step reads from disk
MAX_PENDING_WINDOWS = 16  # ahead of the scorer when playing faster than real time


def _why(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


class AudioFile:
    """An audio file opened for block reads, with the same one-line errors as ``read_audio``."""

    def __init__(self, path: str | Path) -> None:
        import soundfile as sf

        p = Path(path)
        if not p.exists():
            raise AudioError(f"{p}: no such file")
        if p.is_dir():
            raise AudioError(f"{p}: is a directory, not an audio file")
        if p.stat().st_size == 0:
            raise AudioError(f"{p}: empty file")
        try:
            self._f = sf.SoundFile(str(p))
        except Exception as exc:  # soundfile raises several types; all mean "not readable"
            raise AudioError(f"{p}: not a readable audio file ({_why(exc)})") from None
        self.path = p
        self.rate = int(self._f.samplerate)
        if self._f.frames == 0:
            self._f.close()
            raise AudioError(f"{p}: contains no audio samples")

    def blocks(self, seconds: float = BLOCK_S) -> Iterator[np.ndarray]:
        """float32 ``[n, channels]`` blocks; a decode error midway is an ``AudioError``."""
        n = max(1, int(self.rate * seconds))
        while True:
            try:
                block = self._f.read(n, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{self.path}: decoding failed midway ({_why(exc)})") from None
            if not len(block):
                return
            yield block

    def close(self) -> None:
        self._f.close()


async def play_file(
    hub: StreamHub, path: str | Path, realtime: bool = True, info: StreamInfo | None = None
) -> dict[str, Any]:
    """Play one file into the hub as one stream and return its ``stream.ended`` summary.

    A file that cannot be opened raises ``AudioError`` before any stream opens; one that fails
    to decode midway ends its stream (reason ``decode error``) and then raises.
    """
    audio = await asyncio.to_thread(AudioFile, path)
    p = Path(path)
    info = info or StreamInfo.new(
        source="file", leg="file", labels={"path": str(p), "name": p.name}
    )
    stream = hub.open_stream(info, audio.rate, realtime=realtime)
    player = _Player(stream, audio.rate, realtime)
    reason = "shutdown"  # unless the whole file plays
    blocks = audio.blocks()
    try:
        while True:
            block = await asyncio.to_thread(next, blocks, None)
            if block is None:
                break
            await player.play(block)
        reason = "end of file"
    except AudioError:
        reason = "decode error"
        raise
    finally:
        audio.close()
        summary = await stream.close(reason)
    return summary


async def play_audio(
    hub: StreamHub, data: np.ndarray, rate: int, info: StreamInfo, realtime: bool = False
) -> dict[str, Any]:
    """Play PCM already in memory as one stream (eval clips, codec round trips)."""
    stream = hub.open_stream(info, rate, realtime=realtime)
    reason = "shutdown"  # unless the whole clip plays
    try:
        await _Player(stream, rate, realtime).play(data)
        reason = "end of file"
    finally:
        summary = await stream.close(reason)
    return summary


class _Player:
    """Writes PCM in CHUNK_S pieces: paced by the clock, or by the scorer's backlog."""

    def __init__(self, stream: StreamPipeline, rate: int, realtime: bool) -> None:
        self.stream = stream
        self.rate = rate
        self.realtime = realtime
        self.chunk = max(1, int(rate * CHUNK_S))
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.played = 0

    async def play(self, data: np.ndarray) -> None:
        for i, start in enumerate(range(0, len(data), self.chunk)):
            piece = data[start : start + self.chunk]
            self.stream.write(piece)
            self.played += len(piece)
            if self.realtime:
                delay = self.t0 + self.played / self.rate - self.loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif self.stream.pending_windows > MAX_PENDING_WINDOWS:
                while self.stream.pending_windows > MAX_PENDING_WINDOWS // 2:
                    await asyncio.sleep(0.005)
            elif i % 50 == 49:
                await asyncio.sleep(0)


class FileSource(Source):
    name = "files"

    def __init__(self, paths: list[str], as_fast_as_possible: bool = False) -> None:
        self.paths = list(paths)
        self.realtime = not as_fast_as_possible
        self._tasks: list[asyncio.Task[Any]] = []
        self.failed: list[str] = []
        self.finished = 0

    async def start(self, hub: StreamHub) -> None:
        # A file that is not there is a mistake in the config, not a call that failed: say so
        # at start, with a non-zero exit, instead of a log line and exit 0.
        missing = [p for p in self.paths if not Path(p).is_file()]
        if missing:
            raise ConfigError(
                "sources.files: "
                + "; ".join(
                    f"{p}: {'is a directory' if Path(p).is_dir() else 'no such file'}"
                    for p in missing
                )
            )
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
