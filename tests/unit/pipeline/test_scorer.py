"""The shared scorer: batching across streams, results back to the right caller, in order."""

from __future__ import annotations

import asyncio
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
