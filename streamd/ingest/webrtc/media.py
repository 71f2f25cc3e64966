"""What the WebRTC source does with media, kept apart from signalling so it can be tested alone.

- ``restrict_host_addresses``: aioice gathers a host candidate on every interface (and never on
  127.0.0.1) and has no option to choose (aiortc/aioice#2, #57). docs/design.md wants host
  candidates on ``sources.webrtc.host`` only, so the module function aioice calls is wrapped once,
  and the wrapper answers from a context variable that only the daemon's own answers set. Other
  ``RTCPeerConnection``s in the same process (a test's sender) keep aioice's behaviour.
- ``FrameTimeline``: a received ``AudioFrame``'s ``pts`` comes from the RTP timestamp
  (aiortc#168), so lost packets and DTX show up as a jump in ``pts``; the jitter buffer skips
  what it gave up on (aiortc#543). The gap becomes silence of the same length, so stream time
  never shifts, and audio is never dropped to "catch up".
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

log = logging.getLogger("streamd.ingest.webrtc.source")

MAX_GAP_S = 10.0  # a larger pts jump is a sender restart or wrap, not loss: resync, no silence

_HOSTS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "streamd_ice_hosts", default=None
)
_INSTALLED = False


def _install_host_filter() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        hosts = _HOSTS.get()
        if hosts is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [h for h in hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses
    _INSTALLED = True


@contextlib.contextmanager
def restrict_host_addresses(host: str) -> Iterator[None]:
    """Within this block (and tasks it starts), ICE gathers host candidates on ``host`` only.

    ``0.0.0.0``, ``::`` or an empty string keep aioice's default: every interface but loopback.
    """
    if host in ("", "0.0.0.0", "::"):
        yield
        return
    _install_host_filter()
    token = _HOSTS.set([host])
    try:
        yield
    finally:
        _HOSTS.reset(token)


def frame_to_pcm(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` as ``[samples, channels]`` in its own sample format.

    Packed formats (aiortc's Opus decoder gives s16 stereo) come out of ``to_ndarray`` as
    ``[1, samples * channels]`` interleaved; planar ones as ``[channels, samples]``.
    """
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return np.ascontiguousarray(data.reshape(channels, -1).T)
    out: np.ndarray = data.reshape(-1, channels)
    return out


class FrameTimeline:
    """Turns each frame's ``pts`` into the silence that must precede it.

    Tracks where the next frame should start (in samples at the frame's rate). A later start is
    a gap: the caller writes that much silence first. An earlier start (overlap, timestamp reset)
    or a jump over ``max_gap_s`` is a discontinuity: the frame is written whole and the timeline
    resyncs to it, so audio is never cut and a bogus jump never inserts hours of silence.
    """

    def __init__(self, max_gap_s: float = MAX_GAP_S) -> None:
        self.max_gap_s = max_gap_s
        self._next: int | None = None
        self._rate = 0
        self.gap_samples = 0
        self.lost_frames = 0
        self.discontinuities = 0

    def place(self, pts: int | None, time_base: Fraction | None, rate: int, n_samples: int) -> int:
        """Return how many samples of silence go before this frame."""
        if pts is None or time_base is None or rate <= 0:
            # no timing: the frame simply follows the previous one
            if self._next is not None and rate == self._rate:
                self._next += n_samples
            return 0
        start = round(pts * time_base * rate)
        expected, self._next = self._next, start + n_samples
        if expected is None or rate != self._rate:
            self._rate = rate
            return 0
        gap = start - expected
        if gap <= 0:
            if gap < 0:
                self.discontinuities += 1
                log.debug("frame starts %d samples early: written whole, timeline resynced", -gap)
            return 0
        if gap > self.max_gap_s * rate:
            self.discontinuities += 1
            log.warning("pts jumped %.1f s: treated as a discontinuity, not loss", gap / rate)
            return 0
        self.gap_samples += gap
        self.lost_frames += max(1, round(gap / n_samples)) if n_samples else 1
        return gap


class StreamWriter:
    """Received frames into one hub stream: pcm, the gaps as silence, and the loss count."""

    def __init__(self, stream: Any, max_gap_s: float = MAX_GAP_S) -> None:
        self.stream = stream
        self.timeline = FrameTimeline(max_gap_s)
        self.frames = 0

    def push(self, frame: Any) -> None:
        pcm = frame_to_pcm(frame)
        rate = int(frame.sample_rate)
        if rate != self.stream.sample_rate:
            self.stream.set_sample_rate(rate)
        lost_before = self.timeline.lost_frames
        gap = self.timeline.place(frame.pts, frame.time_base, rate, len(pcm))
        if gap:
            self.stream.write_silence(gap)
            self.stream.note_lost(self.timeline.lost_frames - lost_before)
        self.stream.write(pcm)
        self.frames += 1
