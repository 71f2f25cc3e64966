"""One stream's wiring: native audio in; VAD, windows, scores, smoothing and events out.

``write`` is synchronous and cheap so datagram and websocket callbacks can call it directly.
Windows go to the shared scorer at once; one task per stream takes the results back in order.
A stream knows nothing of the hub: it gets its settings and a :class:`StreamSink` (the hub is
the daemon's), so it can be driven and tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from streamd.pipeline.audio import SAMPLE_RATE, AudioConverter, StreamInfo
from streamd.pipeline.pacing import RealTimeBudget
from streamd.pipeline.smoother import Smoother
from streamd.pipeline.tonegate import ToneGate
from streamd.pipeline.vad import SpeechGate
from streamd.pipeline.windows import AdaptiveHop, Window, Windower

if TYPE_CHECKING:
    from streamd.config.sections import AlertsConfig, VadConfig
    from streamd.pipeline.scorer import Score

log = logging.getLogger("streamd.stream")


class StreamSink(Protocol):
    """Where a stream sends its windows, events and hook calls: exactly what it uses, no more."""

    def submit(
        self, samples: np.ndarray, stream: str | None = None, speech_end: int | None = None
    ) -> asyncio.Future[Score]:
        """Queue one window's samples for scoring (``Scorer.submit``)."""
        ...

    def publish(self, event_type: str, stream: dict[str, Any], **fields: Any) -> None:
        """Publish one of the stream's events (the sink adds what every event carries)."""
        ...

    def window_queued(self, stream: StreamPipeline) -> None: ...

    def window_scored(self, stream: StreamPipeline, score: Score) -> None: ...

    def alert(self, stream: StreamPipeline, kind: str) -> None: ...

    def stream_cut(self, stream: StreamPipeline, reason: str) -> None:
        """A limit ended the stream early (``faster_than_real_time``)."""
        ...

    def ended(self, stream: StreamPipeline) -> None:
        """The stream published ``stream.ended`` and takes no more audio."""
        ...


@dataclass(frozen=True)
class StreamSettings:
    """What every stream of a daemon shares: VAD, windows fitted to the model, alert rules."""

    vad: VadConfig
    alerts: AlertsConfig
    windows: tuple[float, float, float]  # length_s, min_s, hop_s
    thresholds: tuple[float, float]  # raise, clear (per source or label once calibrated)
    adaptive: AdaptiveHop | None = None  # windows.adaptive, fitted to the window length
    max_lead_s: float = 10.0  # sources.max_lead_s: how far a live stream may outrun the clock


class StreamPipeline:
    def __init__(
        self,
        info: StreamInfo,
        sample_rate: int,
        settings: StreamSettings,
        sink: StreamSink,
        realtime: bool = True,
    ) -> None:
        vad, a = settings.vad, settings.alerts
        self.info = info
        self.sink = sink
        # Live sources may not outrun the clock (pacing.py); files played as fast as possible may.
        self._max_lead_s = settings.max_lead_s
        self._budget = RealTimeBudget(settings.max_lead_s, time.monotonic()) if realtime else None
        self.cut_reason: str | None = None
        self._cut_task: asyncio.Task[dict[str, Any]] | None = None
        self.sample_rate = sample_rate
        self._converter = AudioConverter(sample_rate)
        self._gate = SpeechGate(vad.aggressiveness, vad.frame_ms, vad.hangover_ms)
        length_s, min_s, hop_s = settings.windows
        self._windower = Windower(length_s, min_s, hop_s, vad.pause_s, adaptive=settings.adaptive)
        raise_, clear = settings.thresholds
        self._tones = ToneGate() if vad.tone_gate else None
        self.windows_gated = 0  # tone/music windows, never scored
        self.smoother = Smoother(
            raise_, clear, a.method, a.alpha, a.n, a.raise_after, a.clear_after
        )
        self._results: asyncio.Queue[tuple[Window, asyncio.Future[Score]] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._consume(), name=f"stream-{info.stream_id}")
        self.closed = False
        self.native_samples = 0
        self._duration_fix = (
            0.0  # seconds: native_samples counted at earlier rates (set_sample_rate)
        )
        self.frames_lost = 0
        self.windows = 0
        self.scores: list[float] = []
        self.alerts_raised = 0
        self._last: tuple[dict[str, float], float] | None = None  # last window and its p_fake
        self.started_at = time.time()
        self.last_audio = time.monotonic()

    @property
    def speech_samples(self) -> int:
        """Speech the VAD gate has taken so far (with hangover), in 16 kHz samples."""
        return self._gate.speech_samples

    @property
    def pending_windows(self) -> int:
        """Windows submitted and not yet published: what a reader faster than real time waits on."""
        return self._results.qsize()

    @property
    def stream_json(self) -> dict[str, Any]:
        return self.info.to_json()

    def write(self, samples: np.ndarray) -> None:
        """PCM at this stream's native rate: int16/float, ``[n]`` or ``[n, channels]``."""
        if self.closed:
            return
        now = time.monotonic()
        seconds = len(samples) / self.sample_rate
        if self._budget is not None and not self._budget.admit(seconds, now):
            self._cut("faster_than_real_time", self._budget.lead(now))
            return
        self._write(samples, now)

    def _write(self, samples: np.ndarray, now: float) -> None:
        self.native_samples += len(samples)
        self.last_audio = now
        self._feed(self._converter.convert(samples))

    def write_silence(self, n_samples: int) -> None:
        """Loss or a gap becomes silence of the same length, so stream time never shifts.

        Not held to the real-time budget: a gap is time that passed (sources cap how long),
        and silence makes no windows to score."""
        if n_samples > 0 and not self.closed:
            self._write(np.zeros(n_samples, dtype=np.float32), time.monotonic())

    def note_lost(self, frames: int) -> None:
        self.frames_lost += frames

    def set_sample_rate(self, rate: int) -> None:
        """A codec change mid-call (re-INVITE): finish the old resampler, start a new one."""
        if rate != self.sample_rate:
            self._feed(self._converter.flush())
            self._windower.suspect()  # a re-INVITE may bring another talker
            # native_samples stays a plain count: the summary's duration corrects for the old rate
            self._duration_fix += (
                self.native_samples / self.sample_rate - self.native_samples / rate
            )
            self.sample_rate = rate
            self._converter = AudioConverter(rate)

    def _feed(self, audio16: np.ndarray) -> None:
        for frame in self._gate.push(audio16):
            for window in self._windower.push(frame):
                self._submit(window)

    def _submit(self, window: Window) -> None:
        if self._tones is not None and self._tones.is_tonal(window.samples):
            self.windows_gated += 1
            return
        self.sink.window_queued(self)
        fut = self.sink.submit(window.samples, self.info.stream_id, window.speech_end)
        self._results.put_nowait((window, fut))

    async def close(self, reason: str = "ended") -> dict[str, Any]:
        """Score what is buffered, then emit ``stream.ended`` with the summary."""
        if self.cut_reason is not None:  # cut by a limit: abort() ends it (once)
            assert self._cut_task is not None
            return await asyncio.shield(self._cut_task)
        if self.closed:
            await asyncio.shield(self._task)
            return self._summary(reason)
        self._feed(self._converter.flush())
        for frame in self._gate.flush():
            for window in self._windower.push(frame):
                self._submit(window)
        for window in self._windower.flush():
            self._submit(window)
        self.closed = True
        self._results.put_nowait(None)
        await self._task
        return self._finish(reason)

    def _summary(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "duration_s": round(self.native_samples / self.sample_rate + self._duration_fix, 3)
            if self.sample_rate
            else 0.0,
            "speech_s": round(self._gate.speech_samples / SAMPLE_RATE, 3),
            "windows": self.windows,
            "windows_gated": self.windows_gated,
            "max_score": round(max(self.scores), 4) if self.scores else None,
            "mean_score": round(float(np.mean(self.scores)), 4) if self.scores else None,
            "alert_raised": self.smoother.ever_raised,
            "alerting": self.smoother.alerting,
            "frames_lost": self.frames_lost,
        }

    async def _consume(self) -> None:
        while True:
            item = await self._results.get()
            if item is None:
                return
            window, fut = item
            try:
                score = await fut
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "stream %s: window %.2f-%.2f s not scored: %s",
                    self.info.stream_id,
                    window.start_s,
                    window.end_s,
                    exc,
                )
                continue
            self._publish(window, score)

    def _publish(self, window: Window, score: Score) -> None:
        self.windows += 1
        self.scores.append(score.p_fake)
        self._windower.note_score(score.p_fake)
        win = {"start_s": round(window.start_s, 3), "end_s": round(window.end_s, 3)}
        self._last = (win, score.p_fake)
        transition = self.smoother.update(score.p_fake)
        smoothed = float(self.smoother.score or 0.0)
        self.sink.publish(
            "window.scored",
            self.stream_json,
            score=round(score.p_fake, 6),
            smoothed=round(smoothed, 6),
            alerting=self.smoother.alerting,
            window=win,
            latency_ms=round(score.queued_s * 1000, 2),
            batch=score.batch_size,
        )
        self.sink.window_scored(self, score)
        if transition is not None:
            self.sink.publish(
                f"alert.{transition.kind}",
                self.stream_json,
                score=round(score.p_fake, 6),
                smoothed=round(transition.score, 6),
                window=win,
                reason="score" if transition.kind == "cleared" else None,
                thresholds={"raise": self.smoother.raise_, "clear": self.smoother.clear},
            )
            self.alerts_raised += transition.kind == "raised"
            self.sink.alert(self, transition.kind)

    def _cut(self, reason: str, lead_s: float) -> None:
        """Stop taking audio now and end the stream without scoring its backlog: a sender
        that outruns real time must not delay other calls' windows."""
        self.cut_reason = reason
        self.closed = True
        log.warning(
            "stream %s (source=%s) cut: audio %.1f s ahead of real time (sources.max_lead_s %.1f)",
            self.info.stream_id,
            self.info.source,
            lead_s,
            self._max_lead_s,
        )
        self.sink.stream_cut(self, reason)
        self._cut_task = asyncio.get_running_loop().create_task(self.abort(reason))

    async def abort(self, reason: str) -> dict[str, Any]:
        """End now without scoring what is still queued; ``stream.ended`` still goes out, since
        consumers track calls by it."""
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self._finish(reason)

    def _finish(self, reason: str) -> dict[str, Any]:
        """``stream.ended`` with the final alert state; a still-raised alert is first closed by
        ``alert.cleared`` (reason ``stream_ended``), so ``alert.*`` consumers see every alert
        end."""
        summary = self._summary(reason)
        raised_at_end = self.smoother.alerting
        if raised_at_end and self._last is not None:
            window, p_fake = self._last
            self.sink.publish(
                "alert.cleared",
                self.stream_json,
                score=round(p_fake, 6),
                smoothed=round(float(self.smoother.score or 0.0), 6),
                window=window,
                reason="stream_ended",
                thresholds={"raise": self.smoother.raise_, "clear": self.smoother.clear},
            )
            self.sink.alert(self, "cleared")
        alert = {"raised_at_end": raised_at_end, "raised": self.alerts_raised}
        self.sink.publish("stream.ended", self.stream_json, summary=summary, alert=alert)
        self.sink.ended(self)
        return summary
