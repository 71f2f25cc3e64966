"""What ``streamd mic`` shows: the state it keeps from audio blocks and events, and two renderings.

``MicView`` is fed from the event loop only (audio blocks from the mic source, events from the
bus), so it needs no locks. ``render`` draws the rich panel that ``Live`` refreshes in place;
``JsonLines`` prints the same facts as plain JSON lines, with level updates throttled.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from streamd.ingest.mic import level_dbfs

if TYPE_CHECKING:
    from rich.console import RenderableType

    from streamd.pipeline.stream import StreamPipeline

METER_WIDTH = 40
FLOOR_DB = -60.0
SPEECH_HOLD_S = 0.3  # the indicator stays on this long after the gate last took speech
RECENT = 8


def speech_samples(stream: StreamPipeline) -> int:
    """Speech the stream's own VAD gate has taken so far (with hangover), in 16 kHz samples.

    Read from the pipeline rather than a second VAD, so the indicator shows what is scored.
    """
    return stream.speech_samples


class MicView:
    def __init__(self, device: str, rate: int, model: str, thresholds: tuple[float, float]) -> None:
        self.device = device
        self.rate = rate
        self.model = model
        self.raise_, self.clear = thresholds
        self.dbfs = -100.0
        self.peak = -100.0
        self.stream_s = 0.0
        self.speech_s = 0.0
        self._speech_seen = 0
        self._speech_at = -1.0
        self.windows: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.n_windows = 0
        self.smoothed: float | None = None
        self.alerting = False
        self.alerts: list[str] = []
        self.ended: dict[str, Any] | None = None

    def audio(self, stream: StreamPipeline, block: np.ndarray) -> None:
        self.dbfs, self.peak = level_dbfs(block)
        self.stream_s = stream.native_samples / max(1, stream.sample_rate)
        seen = speech_samples(stream)
        if seen > self._speech_seen:
            self._speech_at = time.monotonic()
        self._speech_seen = seen
        self.speech_s = seen / 16000

    @property
    def speaking(self) -> bool:
        return time.monotonic() - self._speech_at < SPEECH_HOLD_S

    def event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "window.scored":
            self.n_windows += 1
            self.windows.append(event)
            self.smoothed = event.get("smoothed")
            self.alerting = bool(event.get("alerting"))
        elif kind.startswith("alert."):
            self.alerting = kind == "alert.raised"
            w = event.get("window", {})
            self.alerts.append(
                f"{kind.split('.')[1]} at "
                f"{w.get('end_s', 0):.1f} s (score {event.get('score', 0):.3f})"
            )
        elif kind == "stream.ended":
            self.ended = event.get("summary")

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        top = Table.grid(padding=(0, 2))
        top.add_column(style="bold", width=9)
        top.add_column()
        filled = round(METER_WIDTH * min(1.0, max(0.0, (self.dbfs - FLOOR_DB) / -FLOOR_DB)))
        color = "red" if self.peak > -1 else "yellow" if self.dbfs > -12 else "green"
        meter = Text("█" * filled, style=color) + Text("░" * (METER_WIDTH - filled), style="dim")
        top.add_row("level", meter + Text(f" {self.dbfs:6.1f} dBFS, peak {self.peak:6.1f}"))
        top.add_row(
            "speech",
            Text("● speech", style="bold green")
            if self.speaking
            else Text("○ no speech", style="dim"),
        )
        top.add_row(
            "time",
            f"{self.stream_s:6.1f} s audio, "
            f"{self.speech_s:5.1f} s speech, {self.n_windows} windows scored",
        )
        sm = "-" if self.smoothed is None else f"{self.smoothed:.3f}"
        top.add_row("smoothed", f"{sm}   (raise ≥ {self.raise_:.2f}, clear ≤ {self.clear:.2f})")
        top.add_row(
            "alert",
            Text("ALERT: voice looks AI-generated", style="bold white on red")
            if self.alerting
            else Text("no alert", style="green"),
        )
        recent = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
        recent.add_column("window (s)", justify="right")
        recent.add_column("p_fake", justify="right")
        recent.add_column("", width=24)
        for ev in self.windows:
            w, p = ev["window"], float(ev["score"])
            bar = Text("▇" * max(1, round(p * 24)), style="red" if p >= self.raise_ else "cyan")
            recent.add_row(f"{w['start_s']:6.2f}-{w['end_s']:6.2f}", f"{p:.3f}", bar)
        parts: list[RenderableType] = [
            top,
            Text(""),
            recent if self.windows else Text("waiting for speech windows…", style="dim"),
        ]
        if self.alerts:
            parts.append(Text("alerts: " + "; ".join(self.alerts[-3:]), style="bold"))
        title = f"streamd mic · {self.device} · {self.rate} Hz → 16 kHz · model {self.model}"
        return Panel(Group(*parts), title=title, subtitle="Ctrl-C to stop", expand=False)


class JsonLines:
    """``--json``: level lines at most every ``level_every_s``, and each window/alert/end event."""

    def __init__(
        self, view: MicView, out: TextIO | None = None, level_every_s: float = 0.25
    ) -> None:
        self.view = view
        self.out = out or sys.stdout
        self.every = level_every_s
        self._last = 0.0

    def write(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def audio(self, stream: StreamPipeline, block: np.ndarray) -> None:
        self.view.audio(stream, block)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            v = self.view
            self.write(
                {
                    "type": "level",
                    "t": round(v.stream_s, 2),
                    "dbfs": round(v.dbfs, 1),
                    "peak_dbfs": round(v.peak, 1),
                    "speech": v.speaking,
                }
            )

    def event(self, event: dict[str, Any]) -> None:
        self.view.event(event)
        if event["type"] in (
            "stream.started",
            "window.scored",
            "alert.raised",
            "alert.cleared",
            "stream.ended",
        ):
            self.write(event)
