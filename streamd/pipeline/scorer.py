"""One scorer per model, shared by every stream: windows from all streams go into one queue,
and a worker runs them as one ``session.run`` per batch in a thread (onnxruntime releases the
GIL), so the event loop never waits on inference and many streams share each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from streamd.model.session import Detector

log = logging.getLogger("streamd.scorer")


@dataclass(frozen=True, slots=True)
class Score:
    p_fake: float
    logits: tuple[float, ...]
    batch_size: int
    queued_s: float  # submit to result, what a stream waits
    infer_s: float  # the batch's session.run time


@dataclass
class _Job:
    samples: np.ndarray
    future: asyncio.Future[Score]
    t_submit: float = field(default_factory=time.perf_counter)


BatchObserver = Callable[[int, float], None]


class Scorer:
    def __init__(
        self,
        detector: Detector,
        batch_max: int = 32,
        batch_wait_ms: float = 20.0,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.detector = detector
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamd-infer")
        self.windows = 0
        self.batches = 0
        self.busy_s = 0.0

    @property
    def provider(self) -> str:
        return self.detector.provider

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue else 0

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._worker(), name="scorer")

    async def close(self) -> None:
        """Score what is queued, then stop."""
        if self._task is None or self._queue is None:
            return
        while self._queue.qsize():
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._pool.shutdown(wait=True)

    def submit(self, samples: np.ndarray) -> asyncio.Future[Score]:
        if self._queue is None:
            raise RuntimeError("scorer not started")
        fut: asyncio.Future[Score] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(samples, fut))
        return fut

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [j for j in batch if not j.future.done()]
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                p, logits = await loop.run_in_executor(
                    self._pool, self.detector.score_windows, [j.samples for j in live]
                )
            except Exception as exc:
                log.error("inference failed for a batch of %d: %s", len(live), exc)
                for j in live:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            t1 = time.perf_counter()
            self.windows += len(live)
            self.batches += 1
            self.busy_s += t1 - t0
            if self.on_batch is not None:
                self.on_batch(len(live), t1 - t0)
            for i, j in enumerate(live):
                if not j.future.done():
                    j.future.set_result(
                        Score(
                            float(p[i]),
                            tuple(float(v) for v in logits[i]),
                            len(live),
                            t1 - j.t_submit,
                            t1 - t0,
                        )
                    )
