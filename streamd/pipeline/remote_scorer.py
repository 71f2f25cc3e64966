"""The scorer in front of a Triton tier: the same batching, plus a bound on waiting windows.

While no inference server answers, windows wait in the scorer's queue; past ``max_queue`` new
ones are dropped at once (their future fails, the stream logs it) and counted, so a dead tier
costs bounded memory and never blocks ingest. ``/readyz`` reports the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from streamd.model.remote import RemoteDetector
from streamd.pipeline.scorer import Score, Scorer

log = logging.getLogger("streamd.scorer")


class WindowDropped(RuntimeError):
    """The inference tier is unavailable and the waiting queue is full."""


class RemoteScorer(Scorer):
    def __init__(
        self,
        detector: RemoteDetector,
        batch_max: int = 32,
        batch_wait_ms: float = 20.0,
        max_queue: int = 2000,
        workers: int = 1,
    ) -> None:
        # workers: requests in flight at once; Triton batches them with everyone else's.
        super().__init__(detector, batch_max, batch_wait_ms, workers=workers)
        self.remote = detector
        self.max_queue = max_queue
        self.dropped = 0

    def submit(
        self, samples: np.ndarray, stream: str | None = None, speech_end: int | None = None
    ) -> asyncio.Future[Score]:
        if self.pending < self.max_queue:
            return super().submit(samples, stream, speech_end)
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning(
                "scorer: %d windows waiting for the inference tier: dropped %d so far (%s)",
                self.pending,
                self.dropped,
                self.remote.unavailable() or "tier slow",
            )
        fut: asyncio.Future[Score] = asyncio.get_running_loop().create_future()
        fut.set_exception(WindowDropped(f"inference queue full ({self.max_queue} windows)"))
        return fut

    def status(self) -> dict[str, Any]:
        return {**self.remote.status(), "queued": self.pending, "dropped": self.dropped}

    async def close(self, drain: bool = True) -> None:
        try:
            await super().close(drain)
        finally:
            await self.remote.aclose()
