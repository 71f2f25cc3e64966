"""One scorer per model, shared by every stream: windows from all streams go into one queue,
and a worker runs them as one ``session.run`` per batch in a thread (onnxruntime releases the
GIL), so the event loop never waits on inference and many streams share each call.
"""

from __future__ import annotations

import asyncio
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
    place: tuple[str, int] | None = None  # (stream key, speech_end): front-end reuse
    t_submit: float = field(default_factory=time.perf_counter)


BatchObserver = Callable[[int, float], None]


class Scorer:
    """``workers`` batches run at once (each in its own thread): on a CPU, two single-threaded
    runs often beat one two-threaded run of a small convolutional model (docs/capacity.md)."""

    def __init__(
        self,
        detector: Detector,
        batch_max: int = 32,
        batch_wait_ms: float = 20.0,
        on_batch: BatchObserver | None = None,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.detector = detector
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000.0
        self.on_batch = on_batch
        self.workers = workers
        self._queue: asyncio.Queue[_Job | None] | None = None  # None: a worker stops there
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="streamd-infer")
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
        if not self._tasks:
            self._queue = asyncio.Queue()
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"scorer-{i}") for i in range(self.workers)
            ]

    async def close(self, drain: bool = True) -> None:
        """Stop; every future handed out by ``submit`` is resolved when this returns.

        ``drain``: score everything submitted so far (batches in flight included) first; without
        it, queued windows fail at once and only the batches in flight finish (a benchmark
        ending an overloaded trial). A cancelled close (a shutdown grace period running out)
        fails what is left, so no stream waits forever on a window.
        """
        if not self._tasks or self._queue is None:
            return
        self._closing = True
        if not drain:
            self._fail_queued("scorer closed without scoring this window")
        for _ in self._tasks:
            self._queue.put_nowait(None)
        tasks = self._tasks
        try:
            await asyncio.shield(asyncio.gather(*tasks))
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self._fail_queued("scorer stopped before scoring this window")
            self._tasks = []
            self._pool.shutdown(wait=False)

    def submit(
        self, samples: np.ndarray, stream: str | None = None, speech_end: int | None = None
    ) -> asyncio.Future[Score]:
        """Queue one window. ``stream`` and ``speech_end`` (``Window.speech_end``) place it in
        its stream's speech, so a model with front-end reuse computes only the new audio."""
        if self._queue is None or self._closing:
            raise RuntimeError("scorer not started" if self._queue is None else "scorer closed")
        fut: asyncio.Future[Score] = asyncio.get_running_loop().create_future()
        place = (stream, speech_end) if stream is not None and speech_end is not None else None
        self._queue.put_nowait(_Job(samples, fut, place))
        return fut

    async def _collect(self) -> tuple[list[_Job], bool]:
        """One batch, and whether this worker's stop marker was reached."""
        assert self._queue is not None
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        while len(batch) < self.batch_max:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:  # closing: no point waiting for more
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _worker(self) -> None:
        stop = False
        while not stop:
            batch, stop = await self._collect()
            try:
                await self._run(batch)
            finally:  # cancelled mid-batch: the batch still gets an answer
                _fail(batch, "scorer stopped before scoring this window")

    def _fail_queued(self, why: str) -> None:
        """Fail every job still queued; stop markers stay so the workers still stop."""
        if self._queue is None:
            return
        jobs, markers = [], 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                markers += 1
            else:
                jobs.append(item)
        for _ in range(markers):
            self._queue.put_nowait(None)
        _fail(jobs, why)

    async def _run(self, batch: list[_Job]) -> None:
        live = [j for j in batch if not j.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        # Backend hook: a detector with score_windows_async (model/remote.py) runs on the loop.
        score_async = getattr(self.detector, "score_windows_async", None)
        try:
            if score_async is not None:
                p, logits = await score_async([j.samples for j in live])
            else:
                p, logits = await loop.run_in_executor(
                    self._pool,
                    self.detector.score_windows,
                    [j.samples for j in live],
                    [j.place for j in live],
                )
        except Exception as exc:
            log.error("inference failed for a batch of %d: %s", len(live), exc)
            for j in live:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
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


def _fail(jobs: list[_Job], why: str) -> None:
    for j in jobs:
        if not j.future.done():
            j.future.set_exception(RuntimeError(why))
            j.future.exception()  # an aborted stream no longer awaits it: no "never retrieved"
