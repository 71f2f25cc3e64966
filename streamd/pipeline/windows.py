"""Sliding windows of speech, per stream (docs/design.md "How a stream is scored").

Speech frames (with hangover) go into a buffer that holds at most ``length_s``. A window is cut
every ``hop_s`` of new speech once the buffer is full. When speech stops for ``pause_s`` or the
stream ends, a shorter window is cut if at least ``min_s`` of speech has not been scored yet.
Nothing shorter than ``min_s`` is ever emitted. Window times are stream seconds.

Adaptive scoring (``AdaptiveHop``): a stream whose recent windows all scored confidently real is
scored every ``long_hop_s`` instead of every ``hop_s``; one window above the calm bound, or a
change of talker or codec (``suspect``), drops it back to the base hop at once. With
``long_hop_s <= length_s`` every second of speech is still inside at least one scored window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from streamd.config.sections import WindowsConfig
from streamd.pipeline.audio import SAMPLE_RATE
from streamd.pipeline.vad import Frame


@dataclass(frozen=True, slots=True)
class Window:
    start_s: float
    end_s: float
    samples: np.ndarray
    final: bool = False  # cut because speech stopped or the stream ended
    speech_end: int = 0  # speech samples the windower had taken when it cut this window

    @property
    def speech_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class AdaptiveHop:
    """When a stream counts as confidently real, and how sparsely it is then scored."""

    calm_below: float = 0.2  # p_fake under this is a calm window
    calm_windows: int = 3  # consecutive calm windows before the hop grows
    long_hop_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.calm_below < 1 or self.calm_windows < 1 or self.long_hop_s <= 0:
            raise ValueError("need 0 < calm_below < 1, calm_windows >= 1, long_hop_s > 0")


def adaptive_hop(cfg: WindowsConfig, length_s: float) -> AdaptiveHop | None:
    """The config's adaptive scoring, or None when off; the long hop never exceeds the window
    the model was fitted to (``length_s``)."""
    a = cfg.adaptive
    if not a.enabled:
        return None
    return AdaptiveHop(a.calm_below, a.calm_windows, min(a.long_hop_s, length_s))


class Windower:
    def __init__(
        self,
        length_s: float = 4.0,
        min_s: float = 2.5,
        hop_s: float = 1.0,
        pause_s: float = 0.8,
        sample_rate: int = SAMPLE_RATE,
        adaptive: AdaptiveHop | None = None,
    ) -> None:
        if not 0 < min_s <= length_s:
            raise ValueError("need 0 < min_s <= length_s")
        if adaptive is not None and adaptive.long_hop_s > length_s:
            raise ValueError(
                "adaptive long_hop_s must not exceed length_s (speech would go unscored)"
            )
        self.sr = sample_rate
        self.length = round(length_s * sample_rate)
        self.min = round(min_s * sample_rate)
        self.base_hop = round(hop_s * sample_rate)
        self.hop = self.base_hop
        self.pause = round(pause_s * sample_rate)
        self.adaptive = adaptive
        self._calm = 0  # consecutive calm scores
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (stream start sample, samples)
        self._held = 0
        self._unscored = 0
        self._silence = 0
        self._speech_total = 0  # speech samples taken so far: windows' place in the speech

    @property
    def hop_s(self) -> float:
        """The hop in force now (the base hop unless adaptive scoring has lengthened it)."""
        return self.hop / self.sr

    def note_score(self, p_fake: float) -> None:
        """A window of this stream was scored: lengthen the hop after enough calm windows,
        return to the base hop as soon as one is not calm."""
        if self.adaptive is None:
            return
        if p_fake < self.adaptive.calm_below:
            self._calm += 1
            if self._calm >= self.adaptive.calm_windows:
                self.hop = round(self.adaptive.long_hop_s * self.sr)
        else:
            self.suspect()

    def suspect(self) -> None:
        """Something changed (new talker, re-INVITE, codec switch): back to the base hop."""
        self._calm = 0
        self.hop = self.base_hop

    def push(self, frame: Frame) -> list[Window]:
        if not frame.speech:
            before = self._silence
            self._silence += len(frame.samples)
            if before < self.pause <= self._silence:
                return self._cut_short()
            return []
        self._silence = 0
        self._chunks.append((frame.start, frame.samples))
        self._held += len(frame.samples)
        self._unscored += len(frame.samples)
        self._speech_total += len(frame.samples)
        self._trim()
        if self._held >= self.length and self._unscored >= self.hop:
            self._unscored = 0
            return [self._window(final=False)]
        return []

    def flush(self) -> list[Window]:
        """End of stream."""
        return self._cut_short()

    @property
    def unscored_s(self) -> float:
        return self._unscored / self.sr

    def _cut_short(self) -> list[Window]:
        if self._unscored >= self.min and self._held >= self.min:
            self._unscored = 0
            return [self._window(final=True)]
        return []

    def _trim(self) -> None:
        excess = self._held - self.length
        while excess > 0:
            start, samples = self._chunks[0]
            if len(samples) <= excess:
                self._chunks.popleft()
                self._held -= len(samples)
                excess -= len(samples)
            else:
                self._chunks[0] = (start + excess, samples[excess:])
                self._held -= excess
                excess = 0

    def _window(self, final: bool) -> Window:
        first_start = self._chunks[0][0]
        last_start, last = self._chunks[-1]
        samples = np.concatenate([c for _, c in self._chunks]).astype(np.float32, copy=False)
        end = (last_start + len(last)) / self.sr
        return Window(first_start / self.sr, end, samples, final, self._speech_total)
