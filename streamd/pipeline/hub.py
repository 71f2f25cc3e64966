"""The stream hub: where every source opens its streams. It owns nothing per source.

Sources call ``open_stream`` for each call leg and ``close`` when it ends; the hub is each
stream's :class:`~streamd.pipeline.stream.StreamSink` (the shared scorer, the event bus and the
observer hooks), enforces ``sources.max_streams``, and refuses new streams once the daemon is
shutting down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from streamd.errors import StreamdError
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.calibration import Calibration
from streamd.pipeline.stream import StreamPipeline, StreamSettings
from streamd.pipeline.windows import adaptive_hop

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.events.bus import EventBus
    from streamd.model.session import Detector
    from streamd.pipeline.scorer import Score, Scorer

log = logging.getLogger("streamd.hub")


class HubRefused(StreamdError):
    """A new stream was refused: over the limit, or the daemon is stopping."""


class HubObserver:
    """Hooks for metrics; every method is a no-op here."""

    def stream_opened(self, stream: StreamPipeline) -> None: ...

    def stream_closed(self, stream: StreamPipeline) -> None: ...

    def window_queued(self, stream: StreamPipeline) -> None: ...

    def window_scored(self, stream: StreamPipeline, score: Score) -> None: ...

    def alert(self, stream: StreamPipeline, kind: str) -> None: ...


def fit_windows(config: Config, detector: Detector) -> tuple[float, float, float]:
    """(length_s, min_s, hop_s) the windower uses: the config's, within what the model accepts,
    so a 2 s model gets 2 s windows instead of the first half of every 4 s window."""
    w, m = config.windows, detector.manifest.window
    length = min(w.length_s, m.max_s)
    min_s = min(max(w.min_s, m.min_s), length)
    if (length, min_s) != (w.length_s, w.min_s):
        log.info(
            "model %s takes %.2f-%.2f s windows: using length_s=%.2f min_s=%.2f (config %.2f/%.2f)",
            detector.name,
            m.min_s,
            m.max_s,
            length,
            min_s,
            w.length_s,
            w.min_s,
        )
    return length, min_s, w.hop_s


def load_calibration(config: Config, detector: Detector) -> Calibration | None:
    """``<model.dir>/calibration.yaml`` when it was made for this model (same ONNX sha256)."""
    from pathlib import Path

    from streamd.pipeline.calibration import CALIBRATION_FILE

    try:
        cal = Calibration.read(Path(config.model.dir) / CALIBRATION_FILE)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s/%s ignored: %s", config.model.dir, CALIBRATION_FILE, exc)
        return None
    if cal is None:
        return None
    if cal.model_sha256 and cal.model_sha256 != (detector.manifest.sha256 or ""):
        log.warning("calibration for %s ignored: the model in use is %s", cal.model, detector.name)
        return None
    log.info(
        "threshold %.4f from calibration (%d calls, target %.2f%%)",
        cal.raise_,
        cal.calls,
        100 * cal.target,
    )
    return cal


def alert_thresholds(config: Config, model_threshold: float) -> tuple[float, float]:
    """(raise, clear): ``alerts.raise``/``clear``, else the model's threshold and 0.1 below it."""
    a = config.alerts
    raise_ = a.raise_ if a.raise_ is not None else model_threshold
    clear = a.clear if a.clear is not None else max(0.0, min(raise_, model_threshold) - 0.1)
    return raise_, min(clear, raise_)


class StreamHub:
    def __init__(self, config: Config, detector: Detector, scorer: Scorer, bus: EventBus) -> None:
        self.config = config
        self.detector = detector
        self.scorer = scorer
        self.bus = bus
        self.streams: dict[str, StreamPipeline] = {}
        self.accepting = True
        self.observers: list[HubObserver] = []
        self.cut: dict[tuple[str, str], int] = {}  # (source, reason): streams cut by a limit
        a = config.alerts
        self.calibration = load_calibration(config, detector) if a.raise_ is None else None
        threshold = detector.manifest.threshold
        if self.calibration is not None:
            threshold = self.calibration.raise_
        self.thresholds = alert_thresholds(config, threshold)
        self.model_json: dict[str, Any] = detector.describe()
        self.windows = fit_windows(config, detector)
        self.settings = StreamSettings(
            config.vad,
            config.alerts,
            self.windows,
            self.thresholds,
            adaptive_hop(config.windows, self.windows[0]),
            config.sources.max_lead_s,
        )

    def thresholds_for(self, info: StreamInfo) -> tuple[float, float]:
        """(raise, clear) of a stream: per source or label where ``streamd calibrate`` set them."""
        cal = self.calibration
        if cal is None or not cal.by_group:
            return self.thresholds
        r = cal.raise_for(info.source, info.labels)
        a = self.config.alerts
        clear = a.clear if a.clear is not None else max(0.0, r - 0.1)
        return r, min(clear, r)

    def open_stream(
        self, info: StreamInfo, sample_rate: int, realtime: bool = True
    ) -> StreamPipeline:
        """``realtime``: the source delivers live audio, held to ``sources.max_lead_s``."""
        if not self.accepting:
            raise HubRefused("the daemon is shutting down")
        if len(self.streams) >= self.config.sources.max_streams:
            raise HubRefused(f"sources.max_streams ({self.config.sources.max_streams}) reached")
        if info.stream_id in self.streams:
            raise HubRefused(f"stream {info.stream_id} is already open")
        settings = replace(self.settings, thresholds=self.thresholds_for(info))
        stream = StreamPipeline(info, sample_rate, settings, self, realtime)
        self.streams[info.stream_id] = stream
        log.info(
            "stream %s opened (source=%s leg=%s rate=%d)",
            info.stream_id,
            info.source,
            info.leg,
            sample_rate,
        )
        self.publish("stream.started", info.to_json(), sample_rate=sample_rate)
        for o in self.observers:
            o.stream_opened(stream)
        return stream

    # StreamSink: what each stream calls.

    def submit(
        self, samples: np.ndarray, stream: str | None = None, speech_end: int | None = None
    ) -> asyncio.Future[Score]:
        return self.scorer.submit(samples, stream, speech_end)

    def publish(self, event_type: str, stream: dict[str, Any], **fields: Any) -> None:
        """Every stream event names the model that scored it."""
        self.bus.publish(event_type, stream, **fields, model=self.model_json)

    def ended(self, stream: StreamPipeline) -> None:
        if self.streams.get(stream.info.stream_id) is stream:
            del self.streams[stream.info.stream_id]
            n = stream.windows
            log.info(
                "stream %s ended (%d window%s)", stream.info.stream_id, n, "" if n == 1 else "s"
            )
            for o in self.observers:
                o.stream_closed(stream)

    def window_queued(self, stream: StreamPipeline) -> None:
        for o in self.observers:
            o.window_queued(stream)

    def window_scored(self, stream: StreamPipeline, score: Score) -> None:
        for o in self.observers:
            o.window_scored(stream, score)

    def stream_cut(self, stream: StreamPipeline, reason: str) -> None:
        key = (stream.info.source, reason)
        self.cut[key] = self.cut.get(key, 0) + 1

    def alert(self, stream: StreamPipeline, kind: str) -> None:
        for o in self.observers:
            o.alert(stream, kind)

    async def close_all(self, reason: str = "shutdown") -> None:
        """Stop taking streams, score what is buffered and end every open stream."""
        self.accepting = False
        streams = list(self.streams.values())
        if streams:
            results = await asyncio.gather(
                *(s.close(reason) for s in streams), return_exceptions=True
            )
            for s, r in zip(streams, results, strict=True):
                if isinstance(r, BaseException):
                    log.error("stream %s did not close cleanly: %s", s.info.stream_id, r)
