"""Capacity trials over several processes: one event loop cannot feed thousands of streams.

Each worker process loads the model once (its own onnxruntime session, on the same GPU when
there is one) and runs its share of the streams; all start on the same wall-clock instant, and
the trial's latency percentiles are taken over every window of every process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from streamd.bench.load import Tracks, TrialResult, run_trial
from streamd.bench.speech import Call

_STATE: dict[str, Any] = {}


def _init(
    manifest: str,
    providers: list[str],
    config: dict[str, Any],
    pool: list[Call],
    speech: float,
    trial_s: float,
    seed: int,
) -> None:
    from streamd.config import parse_config
    from streamd.model.session import Detector, RuntimeOptions

    cfg = parse_config(config, "bench path", environ={})
    m = cfg.model
    _STATE["config"] = cfg
    _STATE["detector"] = Detector.load(
        manifest, providers, threads=m.threads, spin=m.spin, runtime=RuntimeOptions.from_config(m)
    )
    _STATE["tracks"] = Tracks(pool, 8, max(60.0, trial_s + 2), speech, seed)


def _trial(
    path: str, n: int, seconds: float, bound: float, packet_ms: int, start_at: float
) -> tuple[dict[str, Any], list[float]]:
    lat: list[float] = []
    r = asyncio.run(
        run_trial(
            path,
            _STATE["detector"],
            _STATE["config"],
            _STATE["tracks"],
            n,
            seconds,
            bound,
            packet_ms,
            start_at,
            lat,
        )
    )
    return asdict(r), lat


class ProcessTrials:
    def __init__(
        self,
        k: int,
        manifest: Path,
        providers: list[str],
        config: dict[str, Any],
        pool: list[Call],
        speech: float,
        trial_s: float,
    ) -> None:
        self.k = k
        ctx = multiprocessing.get_context("spawn")
        self.pool = ctx.Pool(k, _init, (str(manifest), providers, config, pool, speech, trial_s, 1))

    def run(self, path: str, n: int, seconds: float, bound: float, packet_ms: int) -> TrialResult:
        shares = [n // self.k + (i < n % self.k) for i in range(self.k)]
        start_at = time.time() + 2.0
        jobs = [(path, s, seconds, bound, packet_ms, start_at) for s in shares if s]
        parts = self.pool.starmap(_trial, jobs)
        rs = [TrialResult(**r) for r, _ in parts]
        lat = np.concatenate([np.asarray(x, dtype=np.float64) for _, x in parts])
        p50, p99, mx = (
            (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max()))
            if len(lat)
            else (None, None, None)
        )
        unscored = sum(r.unscored for r in rs)
        windows = sum(r.windows for r in rs)
        gpu = [r.gpu_util for r in rs if r.gpu_util is not None]
        return TrialResult(
            path=path,
            streams=n,
            passed=bool(windows) and p99 is not None and p99 <= bound and unscored == 0,
            seconds=max(r.seconds for r in rs),
            windows=windows,
            windows_per_s=sum(r.windows_per_s for r in rs),
            p50_s=p50,
            p99_s=p99,
            max_s=mx,
            unscored=unscored,
            cpu_per_stream=sum(r.cpu_per_stream * r.streams for r in rs) / max(1, n),
            feed_lag_p99_s=max(r.feed_lag_p99_s for r in rs),
            mean_batch=sum(r.mean_batch * r.windows for r in rs) / max(1, windows),
            load=rs[0].load,
            gpu_util=max(gpu) if gpu else None,
            errors=[e for r in rs for e in r.errors],
        )

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
