"""How far ahead of the wall clock a live stream's audio may run before the stream is cut.

A call delivers audio in real time, give or take a jitter buffer's worth. A sender that pushes
faster (a replayed recording, a flood over AudioSocket or an audio fork) would queue windows
faster than they can be scored and delay every other call's alerts. The budget is simple and
cheap: audio received may exceed the time since the stream opened by at most ``max_lead_s``.
So each live stream queues at most ``max_lead_s / hop`` windows beyond its real-time share, and
the scorer's queue stays bounded by ``max_streams`` such shares.
"""

from __future__ import annotations


class RealTimeBudget:
    """Audio seconds admitted against seconds of wall clock; ``now`` is passed in (tests)."""

    def __init__(self, max_lead_s: float, now: float) -> None:
        self.max_lead_s = max_lead_s
        self.started = now
        self.audio_s = 0.0

    def lead(self, now: float) -> float:
        """Seconds of audio received beyond the time elapsed."""
        return self.audio_s - (now - self.started)

    def admit(self, seconds: float, now: float) -> bool:
        """Count ``seconds`` of audio; False once the stream runs more than the lead ahead."""
        self.audio_s += seconds
        return self.lead(now) <= self.max_lead_s
