"""One capacity trial: N live streams paced in real time through the daemon's own pipeline.

No network: each stream is opened on a ``StreamHub`` with the daemon's scorer and event bus, and
fed 8 kHz G.711 audio a packet at a time on the packet clock, the way an RTP adapter feeds it.
A window's latency is when its ``window.scored`` event is published minus when its last sample
was due; packetisation, queueing, batching and inference are all inside it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamd.bench.speech import PHONE_RATE, Call, stream_audio
from streamd.config import Config
from streamd.events.bus import EventBus
from streamd.model.session import Detector
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubObserver, StreamHub
from streamd.pipeline.scorer import Score, Scorer
from streamd.pipeline.stream import StreamPipeline


@dataclass
class TrialResult:
    path: str
    streams: int
    passed: bool
    seconds: float
    windows: int
    windows_per_s: float
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    unscored: int
    cpu_per_stream: float  # share of one core, the whole process (inference included)
    feed_lag_p99_s: float  # how late packets went in: the event loop falling behind
    mean_batch: float
    load: float  # 1-minute load average when the trial started
    gpu_util: float | None = None
    reused: float | None = None  # share of windows scored from cached front-end frames
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _Counter(HubObserver):
    def __init__(self) -> None:
        self.queued = 0
        self.batch_sum = 0

    def window_queued(self, stream: StreamPipeline) -> None:
        self.queued += 1

    def window_scored(self, stream: StreamPipeline, score: Score) -> None:
        self.batch_sum += score.batch_size


class Tracks:
    """A few long caller tracks; stream i plays track i mod k from its own offset, so thousands
    of streams cost the memory of k tracks."""

    def __init__(self, pool: list[Call], k: int, seconds: float, speech: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.tracks = [stream_audio(pool, seconds, speech, rng) for _ in range(k)]
        self.offsets = rng

    def packets(self, i: int, n_samples: int) -> tuple[np.ndarray, int]:
        track = self.tracks[i % len(self.tracks)]
        start = int(self.offsets.integers(len(track))) // n_samples * n_samples
        return track, start


class _GpuMeter:
    """Mean GPU utilisation over a trial through NVML, when there is one."""

    def __init__(self, provider: str) -> None:
        self.samples: list[float] = []
        self.handle: Any = None
        if provider not in ("cuda", "tensorrt"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            self.handle = None

    def sample(self) -> None:
        if self.handle is not None:
            self.samples.append(float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


async def run_trial(
    path: str,
    detector: Detector,
    config: Config,
    tracks: Tracks,
    n: int,
    seconds: float,
    bound_s: float,
    packet_ms: int = 20,
    start_at: float | None = None,
    keep_latencies: list[float] | None = None,
) -> TrialResult:
    """N streams for ``seconds`` of audio each; then up to ``bound_s`` for the last windows."""
    m = config.model
    scorer = Scorer(detector, m.batch_max, m.batch_wait_ms, workers=m.workers)
    await scorer.start()
    bus = EventBus()
    hub = StreamHub(config, detector, scorer, bus)
    counter = _Counter()
    hub.observers.append(counter)
    pkt = PHONE_RATE * packet_ms // 1000
    ps = pkt / PHONE_RATE
    if start_at is not None:  # processes of one trial start on the same wall-clock instant
        await asyncio.sleep(max(0.0, start_at - time.time()))
    t_start = time.perf_counter() + 0.05
    # Calls start spread over one window length, as arrivals are in steady state: started in
    # step, every stream's first window (no cached frames yet) would land in the same second.
    spread = min(4.0, seconds / 4)
    t0 = [t_start + spread * i / n for i in range(n)]
    streams: list[StreamPipeline] = []
    index: dict[str, int] = {}
    feeds = []
    for i in range(n):
        info = StreamInfo.new(source="bench", leg="caller", stream_id=f"cap-{i}")
        index[info.stream_id] = i
        streams.append(hub.open_stream(info, PHONE_RATE))
        feeds.append(tracks.packets(i, pkt))
    latencies: list[float] = []
    errors: list[str] = []

    def sink(ev: dict[str, Any]) -> None:
        if ev["type"] == "window.scored":
            i = index[ev["stream"]["stream_id"]]
            latencies.append(time.perf_counter() - (t0[i] + ev["window"]["end_s"]))

    bus.add_sink(sink)
    gpu = _GpuMeter(detector.provider)
    load = os.getloadavg()[0]
    sent = [0] * n
    lags: list[float] = []
    reuse = detector.reuse
    reuse0 = (reuse.reused, reuse.full) if reuse is not None else (0, 0)
    cpu0 = _cpu()
    t_end = t_start + seconds
    next_gpu = t_start
    while (now := time.perf_counter()) < t_end:
        worst = 0.0
        for i in range(n):
            due = int((now - t0[i]) / ps)
            if due <= sent[i]:
                continue
            track, start = feeds[i]
            for k in range(sent[i], due):
                at = (start + k * pkt) % (len(track) - pkt)
                streams[i].write(track[at : at + pkt])
            worst = max(worst, now - (t0[i] + due * ps))
            sent[i] = due
        lags.append(worst)
        if now >= next_gpu:
            gpu.sample()
            next_gpu = now + 0.5
        await asyncio.sleep(max(0.0, ps - (time.perf_counter() - now)))
    wall = time.perf_counter() - t_start
    cpu = _cpu() - cpu0
    deadline = time.perf_counter() + bound_s
    while len(latencies) < counter.queued and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    unscored = counter.queued - len(latencies)
    reused = None
    if reuse is not None:
        hits, whole = reuse.reused - reuse0[0], reuse.full - reuse0[1]
        reused = hits / max(1, hits + whole)
    for s in streams:
        await s.abort("bench")
    await scorer.close(drain=False)
    if keep_latencies is not None:
        keep_latencies.extend(latencies)
    lat = np.asarray(latencies)
    p50, p99, mx = (
        (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max()))
        if len(lat)
        else (None, None, None)
    )
    if not len(lat):
        errors.append("no window was scored: the trial is shorter than a window")
    passed = bool(len(lat)) and p99 is not None and p99 <= bound_s and unscored == 0
    return TrialResult(
        path=path,
        streams=n,
        passed=passed,
        seconds=round(wall, 2),
        windows=len(lat),
        windows_per_s=len(lat) / wall,
        p50_s=p50,
        p99_s=p99,
        max_s=mx,
        unscored=unscored,
        cpu_per_stream=cpu / wall / max(1, n),
        feed_lag_p99_s=float(np.percentile(lags, 99)) if lags else 0.0,
        mean_batch=counter.batch_sum / max(1, len(lat)),
        load=load,
        gpu_util=gpu.mean,
        reused=reused,
        errors=errors,
    )


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
