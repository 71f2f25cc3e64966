"""The shared scorer: batching across streams, results back to the right caller, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector
from streamd.pipeline.scorer import Scorer


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> Detector:
    return Detector.load(resolve_manifest(tiny_model_dir, "tiny"), ["cuda", "cpu"])


def windows(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(40000 + 160 * (i % 3))).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("batch_max", [1, 32])
async def test_many_streams_get_their_own_results_in_order(
    detector: Detector, batch_max: int
) -> None:
    n_streams, per_stream = 12, 4
    data = [windows(per_stream, seed) for seed in range(n_streams)]
    expected = [detector.score_windows(d)[0] for d in data]  # one stream at a time, unbatched
    sizes: list[int] = []
    scorer = Scorer(
        detector, batch_max=batch_max, batch_wait_ms=20, on_batch=lambda n, _s: sizes.append(n)
    )
    await scorer.start()

    async def stream(i: int) -> list[float]:
        futs = [scorer.submit(w) for w in data[i]]
        return [(await f).p_fake for f in futs]

    got = await asyncio.gather(*(stream(i) for i in range(n_streams)))
    await scorer.close()
    for i in range(n_streams):
        np.testing.assert_allclose(got[i], expected[i], atol=1e-5)
    assert sum(sizes) == n_streams * per_stream
    assert max(sizes) <= batch_max
    if batch_max > 1:
        assert max(sizes) > 1, "windows from different streams should share a session.run"


async def test_event_loop_is_not_blocked_by_inference(detector: Detector) -> None:
    scorer = Scorer(detector, batch_max=32, batch_wait_ms=0)
    await scorer.start()
    futs = [scorer.submit(w) for w in windows(32, 1)]
    ticks = 0
    while not all(f.done() for f in futs):
        await asyncio.sleep(0.001)
        ticks += 1
    await scorer.close()
    assert ticks > 3  # the loop kept running while the batch was scored in the worker thread


def test_provider_is_what_the_session_reports(detector: Detector) -> None:
    assert (
        detector.provider
        == {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}[
            detector.session.get_providers()[0]
        ]
    )


def test_scores_do_not_depend_on_batch_mates(detector: Detector) -> None:
    ws = windows(6, 3)
    alone = [detector.score_windows([w])[0][0] for w in ws]
    together = detector.score_windows(ws)[0]
    np.testing.assert_allclose(together, alone, atol=1e-5)


class _Gate:
    """Holds each batch inside ``score_windows`` until released, so a test can close the scorer
    while a batch is really in flight in the worker thread."""

    def __init__(self, detector: Detector) -> None:
        self.detector = dataclasses.replace(detector)
        self.inner = detector.score_windows
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.most_inside = 0
        setattr(self.detector, "score_windows", self._score)  # noqa: B010 (instance override)

    def _score(self, ws: list[np.ndarray], places: object = None) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        try:
            assert self.release.wait(10), "test never released the batch"
            return self.inner(ws)
        finally:
            with self.lock:
                self.inside -= 1


async def test_close_resolves_the_batch_in_flight_and_everything_queued(
    detector: Detector,
) -> None:
    gate = _Gate(detector)
    scorer = Scorer(gate.detector, batch_max=2, batch_wait_ms=0)
    await scorer.start()
    ws = windows(5, 7)
    futs = [scorer.submit(w) for w in ws]
    assert await asyncio.to_thread(gate.entered.wait, 10)
    closing = asyncio.create_task(scorer.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # close waits for the batch in flight instead of cancelling it
    gate.release.set()
    await asyncio.wait_for(closing, 30)
    assert all(f.done() for f in futs)
    got = [f.result().p_fake for f in futs]
    np.testing.assert_allclose(got, detector.score_windows(ws)[0], atol=1e-5)
    with pytest.raises(RuntimeError, match="closed"):
        scorer.submit(ws[0])


async def test_cancelled_close_still_resolves_every_future(detector: Detector) -> None:
    gate = _Gate(detector)
    scorer = Scorer(gate.detector, batch_max=1, batch_wait_ms=0)
    await scorer.start()
    futs = [scorer.submit(w) for w in windows(4, 8)]
    assert await asyncio.to_thread(gate.entered.wait, 10)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(scorer.close(), 0.05)  # a shutdown grace period running out
    gate.release.set()
    assert all(f.done() for f in futs)
    for f in futs:
        with pytest.raises(RuntimeError, match="stopped before scoring"):
            f.result()


async def test_close_with_nothing_queued_returns_at_once(detector: Detector) -> None:
    scorer = Scorer(detector)
    await scorer.start()
    await asyncio.wait_for(scorer.close(), 5)
    await scorer.close()  # twice is harmless


async def test_close_without_drain_fails_the_queue_but_finishes_the_batch_in_flight(
    detector: Detector,
) -> None:
    gate = _Gate(detector)
    scorer = Scorer(gate.detector, batch_max=1, batch_wait_ms=0)
    await scorer.start()
    futs = [scorer.submit(w) for w in windows(4, 9)]
    assert await asyncio.to_thread(gate.entered.wait, 10)
    closing = asyncio.create_task(scorer.close(drain=False))
    await asyncio.sleep(0.05)
    gate.release.set()
    await asyncio.wait_for(closing, 30)
    assert futs[0].result().batch_size == 1  # the batch in flight was scored
    for f in futs[1:]:
        with pytest.raises(RuntimeError, match="without scoring"):
            f.result()


async def test_two_workers_score_batches_at_once_with_the_same_results(detector: Detector) -> None:
    gate = _Gate(detector)
    scorer = Scorer(gate.detector, batch_max=1, batch_wait_ms=0, workers=2)
    await scorer.start()
    ws = windows(6, 10)
    futs = [scorer.submit(w) for w in ws]
    assert await asyncio.to_thread(gate.entered.wait, 10)
    for _ in range(100):  # the second worker enters while the first is still held
        if gate.most_inside == 2:
            break
        await asyncio.sleep(0.01)
    gate.release.set()
    await asyncio.wait_for(scorer.close(), 30)
    assert gate.most_inside == 2
    np.testing.assert_allclose(
        [f.result().p_fake for f in futs], detector.score_windows(ws)[0], atol=1e-5
    )
    assert scorer.windows == 6 and scorer.batches == 6
