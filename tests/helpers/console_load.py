"""A load generator for the console: simulated calls published through a real daemon's event bus.

Events go through the daemon's own bus, so they are stored, numbered, replayed and fanned out to
``/v1/events`` exactly like the pipeline's; only the audio and the model are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from streamd.events.bus import EventBus

SOURCES = ("sip", "twilio", "audiohook", "webrtc")
QUEUES = ("billing", "support", "sales")
MODEL = {"name": "tiny", "version": "sim"}
THRESHOLDS = {"raise": 0.5, "clear": 0.4}


def caller_number(i: int) -> str:
    return f"+1555{i:07d}"


def call_id(i: int) -> str:
    return f"call-{i:04d}"


def labels_for(i: int, leg: str) -> dict[str, str]:
    source, queue, num = SOURCES[i % 4], QUEUES[i % 3], caller_number(i)
    if source == "sip":
        base = {"from": f"sip:{num}@pbx.example", "to": "sip:+18005550100@cc.example"}
    elif source == "twilio":
        base = {"From": num, "To": "+18005550100", "callSid": f"CA{i:032d}", "track": leg}
    elif source == "audiohook":
        base = {"ani": f"tel:{num}", "dnis": "tel:+18005550100", "aniName": f"Caller {i}"}
    else:
        base = {"caller": num, "origin": "softphone"}
    return {**base, "queue": queue}


@dataclass
class SimCall:
    index: int
    legs: list[dict[str, Any]]
    t: float = 0.0  # stream seconds scored so far
    smoothed: float = 0.1
    alerting: bool = False
    alert_ids: list[int] = field(default_factory=list)


class ConsoleLoad:
    def __init__(self, bus: EventBus, seed: int = 7) -> None:
        self.bus = bus
        self.rng = random.Random(seed)
        self.calls: dict[int, SimCall] = {}
        self.published = 0

    def _pub(self, type_: str, stream: dict[str, Any], **fields: Any) -> dict[str, Any]:
        self.published += 1
        return self.bus.publish(type_, stream, **fields)

    def start_call(self, i: int, two_legs: bool) -> SimCall:
        legs = []
        for leg in ("caller", "agent") if two_legs else ("caller",):
            stream = {
                "stream_id": f"{call_id(i)}:{leg}",
                "call_id": call_id(i),
                "leg": leg,
                "source": SOURCES[i % 4],
                "labels": labels_for(i, leg),
            }
            legs.append(stream)
            self._pub("stream.started", stream, sample_rate=8000, model=MODEL)
        call = SimCall(i, legs)
        self.calls[i] = call
        return call

    def window(self, call: SimCall, p_fake: float) -> None:
        start = call.t
        call.t += 1.0
        call.smoothed = 0.5 * p_fake + 0.5 * call.smoothed
        win = {"start_s": round(start, 3), "end_s": round(start + 4.0, 3)}
        for stream in call.legs:
            p = p_fake if stream["leg"] == "caller" else self.rng.uniform(0.02, 0.2)
            sm = call.smoothed if stream["leg"] == "caller" else 0.1
            self._pub(
                "window.scored",
                stream,
                score=round(p, 6),
                smoothed=round(sm, 6),
                alerting=call.alerting and stream["leg"] == "caller",
                window=win,
                model=MODEL,
                latency_ms=5.0,
                batch=8,
            )
        if not call.alerting and call.smoothed >= THRESHOLDS["raise"]:
            call.alerting = True
            ev = self._pub(
                "alert.raised",
                call.legs[0],
                score=round(p_fake, 6),
                smoothed=round(call.smoothed, 6),
                window=win,
                model=MODEL,
                thresholds=THRESHOLDS,
            )
            call.alert_ids.append(ev["id"])

    def tick(self, call: SimCall, fake: bool) -> None:
        p = self.rng.uniform(0.85, 0.99) if fake else self.rng.uniform(0.01, 0.3)
        self.window(call, p)

    def end_call(self, i: int) -> None:
        call = self.calls.pop(i)
        for stream in call.legs:
            raised = call.alerting and stream["leg"] == "caller"
            if raised:
                self._pub(
                    "alert.cleared",
                    stream,
                    score=0.9,
                    smoothed=round(call.smoothed, 6),
                    window={"start_s": call.t, "end_s": call.t + 4},
                    model=MODEL,
                    reason="stream_ended",
                    thresholds=THRESHOLDS,
                )
            self._pub(
                "stream.ended",
                stream,
                summary={
                    "reason": "bye",
                    "duration_s": call.t + 4,
                    "speech_s": call.t + 3,
                    "windows": int(call.t),
                    "frames_lost": 0,
                },
                alert={"raised_at_end": raised, "raised": len(call.alert_ids)},
                model=MODEL,
            )

    def populate(self, n: int, two_legs: int, fake_every: int, fake_offset: int) -> list[int]:
        """``n`` live calls with 3 windows each; every ``fake_every``-th one raises an alert."""
        fakes = []
        for i in range(n):
            call = self.start_call(i, two_legs=i < two_legs)
            fake = i % fake_every == fake_offset
            if fake:
                fakes.append(i)
            for _ in range(3):
                self.tick(call, fake)
        return fakes

    async def run_live(
        self,
        stop: asyncio.Event,
        fakes: set[int],
        late_fake: int,
        late_after_s: float,
        max_s: float = 120.0,
        per_s: int = 1,
    ) -> None:
        """Every call scores ``per_s`` windows a second, spread over 10 ticks; ``late_fake`` turns
        fake after ``late_after_s``. Bounded by ``max_s`` and by ``stop``."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ids = sorted(self.calls)
        k = 0
        while not stop.is_set() and loop.time() - t0 < max_s:
            late = loop.time() - t0 >= late_after_s
            share = max(1, len(ids) * per_s // 10)
            for _ in range(share):
                i = ids[k % len(ids)]
                k += 1
                if i in self.calls:
                    self.tick(self.calls[i], i in fakes or (late and i == late_fake))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
