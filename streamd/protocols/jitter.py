"""A clock-driven jitter buffer for one RTP stream, sans-I/O.

streamd analyses audio, it does not play it, so the buffer never paces output: a packet that is
next in sequence goes out at once. It waits only when there is a hole, for at most
``target_ms`` after the first packet behind the hole arrived, and gives up early (counted in
``skipped``) when more than ``target_ms + max_extra_ms`` of audio piles up behind the hole. So
latency is zero without loss, never more than the target with it, and cannot grow after a burst.

Output is a list of :class:`Payload` (decode it) and :class:`Gap` (write that much silence).
Time comes from RTP timestamps, never from packet counts: a gap is the distance between where
the previous packet ended and where the next one starts, so N lost packets of any ptime give N
ptimes of silence. Where timestamps cannot be trusted (an SSRC change, a sequence restart, a
timestamp jump the wall clock cannot explain) the gap comes from arrival times instead, so the
output timeline only moves forward and never jumps by hours.

The caller passes ``now`` (seconds, any monotonic clock); nothing here reads a clock. A UDP
adapter pushes each parsed packet, pops right away, and arms one timer for :meth:`deadline`::

    buffer.push(parse_rtp(datagram), loop.time())
    for item in buffer.pop(loop.time()):
        gap = isinstance(item, Gap)
        pcm = decoder.silence(item.samples) if gap else decoder.decode(item.payload)
    # when deadline() is not None: loop.call_at(d, lambda: drain(max(loop.time(), d)))
    # at end of stream (BYE, RTP timeout): drain buffer.flush() the same way
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from streamd.protocols.rtp import RtpPacket, SequenceUnwrapper, TimestampUnwrapper

#: RFC 3550 appendix A.1: a jump beyond these is a restart candidate, not a reorder or a loss.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
_PLAYED_MEMORY = 1024
_RETIRED_MEMORY = 8
#: A timestamp gap may exceed the arrival-time gap by this much before it counts as a jump.
_GAP_SLACK_S = 1.0
#: The largest ptime (in seconds) learned from consecutive packets.
_MAX_PTIME_S = 0.2


@dataclass(frozen=True, slots=True)
class Payload:
    """Packet payload to decode. ``position`` is where it starts on the output timeline, in
    RTP clock ticks since the first packet; ``timestamp`` and ``sequence`` are the raw RTP ones."""

    payload: bytes
    payload_type: int
    position: int
    timestamp: int
    sequence: int
    ssrc: int
    marker: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """``samples`` RTP clock ticks of silence starting at ``position``.

    ``reason`` is ``loss`` (packets missing), ``silence`` (the sender skipped time, e.g. DTX or
    telephone-event packets that are ignored) or ``resync`` (new source or timestamp jump; the
    length comes from arrival times)."""

    samples: int
    position: int
    reason: str


Item = Payload | Gap


@dataclass(slots=True)
class JitterStats:
    """Counters for metrics and ``stream.ended``. Every received packet ends up in exactly one
    of played, duplicates, late, discarded or ignored (or is still buffered). Packets counted
    ``late`` were already counted ``lost`` when their hole was given up."""

    received: int = 0
    played: int = 0
    duplicates: int = 0
    late: int = 0
    reordered: int = 0
    lost_packets: int = 0
    lost_samples: int = 0
    gap_samples: int = 0
    ssrc_changes: int = 0
    restarts: int = 0
    skipped: int = 0
    discarded: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Entry:
    seq: int
    ts: int
    arrival: float
    packet: RtpPacket


@dataclass(slots=True)
class _Played:
    seq: int
    ts: int
    position: int
    arrival: float
    packet: RtpPacket


class JitterBuffer:
    """Reorders, de-duplicates and conceals one stream; see the module docstring."""

    def __init__(
        self,
        clock_rate: int,
        *,
        target_ms: float = 60.0,
        max_extra_ms: float = 200.0,
        max_packets: int = 512,
        ptime_ms: float = 20.0,
        duration_of: Callable[[int, bytes], int | None] | None = None,
        ignore_payload_types: Iterable[int] = (),
    ) -> None:
        """``duration_of(pt, payload)`` may give a packet's length in clock ticks (see
        ``Decoder.duration``); without it the length is learned from consecutive timestamps.
        ``ignore_payload_types`` (telephone-event, comfort noise) fill sequence holes but are
        not output; the time they cover comes out as a ``silence`` gap."""
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate = clock_rate
        self._target_s = target_ms / 1000.0
        self._limit_ticks = round((target_ms + max_extra_ms) * clock_rate / 1000.0)
        self._max_packets = max_packets
        self._default_ptime = max(1, round(ptime_ms * clock_rate / 1000.0))
        self._max_ptime = round(_MAX_PTIME_S * clock_rate)
        self._duration_of = duration_of
        self._ignore = frozenset(ignore_payload_types)
        self.stats = JitterStats()

        self._ssrc: int | None = None
        self._seq = SequenceUnwrapper()
        self._ts = TimestampUnwrapper()
        self._heap: list[int] = []
        self._entries: dict[int, _Entry] = {}
        self._next_seq: int | None = None
        self._played_order: deque[int] = deque()
        self._played_set: set[int] = set()
        self._highest_arrival: float | None = None
        self._probation: tuple[int, RtpPacket, float, str] | None = None
        self._retired: dict[int, float] = {}
        self._prev: _Played | None = None
        self._last_ts: int | None = None
        self._ptime: int | None = None
        self._resync = False
        self._ready: list[Item] = []

    # -- input ---------------------------------------------------------------------------------

    def push(self, packet: RtpPacket, now: float) -> None:
        """Take one received packet; ``now`` is its arrival time in seconds."""
        self.stats.received += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                retired_at = self._retired.get(packet.ssrc)
                if (
                    retired_at is not None
                    and now - retired_at <= self._limit_ticks / self.clock_rate
                ):
                    self.stats.late += 1  # a straggler from the source we just left
                    return
                self._retired[self._ssrc] = now
                while len(self._retired) > _RETIRED_MEMORY:
                    del self._retired[next(iter(self._retired))]
                self.stats.ssrc_changes += 1
                self._new_epoch()
            self._ssrc = packet.ssrc
        highest = self._seq.highest
        if highest is not None:
            delta = self._seq.extend(packet.sequence) - highest
            if delta > MAX_DROPOUT or delta < -MAX_MISORDER or self._implausible_jump(delta, now):
                self._far_packet(packet, now, "discarded" if delta > 0 else "late")
                return
        self._probation = None
        self._accept(packet, now)

    def _implausible_jump(self, delta: int, now: float) -> bool:
        """A forward jump that claims far more lost packets than the wall clock allows (one
        corrupt or spoofed packet) must not make every following real packet "late"."""
        if delta <= 1 or self._highest_arrival is None:
            return False
        ptime_s = (self._ptime or self._default_ptime) / self.clock_rate
        return (delta - 1) * ptime_s > now - self._highest_arrival + _GAP_SLACK_S

    def _far_packet(self, packet: RtpPacket, now: float, kind: str) -> None:
        """RFC 3550 A.1 probation: two in-sequence packets after a big jump mean a restart."""
        probation = self._probation
        if probation is not None and packet.sequence == probation[0]:
            _, first, first_arrival, first_kind = probation
            setattr(self.stats, first_kind, getattr(self.stats, first_kind) - 1)
            self.stats.restarts += 1
            self._new_epoch()
            self._accept(first, first_arrival)
            self._accept(packet, now)
            return
        self._probation = ((packet.sequence + 1) & 0xFFFF, packet, now, kind)
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    def _accept(self, packet: RtpPacket, now: float) -> None:
        seq = self._seq.extend(packet.sequence)
        if self._next_seq is not None and seq < self._next_seq:
            if seq in self._played_set:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            return
        if seq in self._entries:
            self.stats.duplicates += 1
            return
        highest = self._seq.highest
        if highest is not None and seq < highest:
            self.stats.reordered += 1
        else:
            self._highest_arrival = now
        self._seq.unwrap(packet.sequence)
        ts = self._ts.unwrap(packet.timestamp)
        self._entries[seq] = _Entry(seq, ts, now, packet)
        heapq.heappush(self._heap, seq)

    def _new_epoch(self) -> None:
        """Play out what the old source left and start numbering afresh (SSRC change, restart)."""
        self._drain(self._ready)
        self._seq.reset()
        self._ts.reset()
        self._next_seq = None
        self._played_order.clear()
        self._played_set.clear()
        self._probation = None
        self._highest_arrival = None
        self._last_ts = None
        self._resync = self._prev is not None

    # -- output --------------------------------------------------------------------------------

    def pop(self, now: float) -> list[Item]:
        """Everything that may go out at ``now``, in order."""
        out, self._ready = self._ready, []
        while self._heap:
            head = self._heap[0]
            if self._next_seq is None or head == self._next_seq:
                self._play(out)
                continue
            # Same expression as deadline(), so pop(deadline()) always makes progress.
            if now >= self._hole_deadline():
                self._play(out)
            elif self._depth_ticks() > self._limit_ticks or len(self._entries) > self._max_packets:
                self.stats.skipped += 1
                self._play(out)
            else:
                break
        return out

    def flush(self) -> list[Item]:
        """End of stream: everything still buffered, holes concealed as loss."""
        out, self._ready = self._ready, []
        self._drain(out)
        return out

    def deadline(self) -> float | None:
        """When :meth:`pop` will next have something to give up waiting for (None: no hole)."""
        if not self._heap or self._next_seq is None or self._heap[0] == self._next_seq:
            return None
        return self._hole_deadline()

    def _hole_deadline(self) -> float:
        return min(entry.arrival for entry in self._entries.values()) + self._target_s

    @property
    def depth_ms(self) -> float:
        """Audio held behind a hole, in milliseconds."""
        return 1000.0 * self._depth_ticks() / self.clock_rate

    def _depth_ticks(self) -> int:
        highest = self._ts.highest
        if highest is None or not self._entries:
            return 0
        base = self._last_ts if self._last_ts is not None else self._entries[self._heap[0]].ts
        return max(0, highest - base)

    def _drain(self, out: list[Item]) -> None:
        while self._heap:
            self._play(out)

    def _play(self, out: list[Item]) -> None:
        entry = self._entries.pop(heapq.heappop(self._heap))
        hole = 0 if self._next_seq is None else entry.seq - self._next_seq
        if hole > 0:
            self.stats.lost_packets += hole
        self._next_seq = entry.seq + 1
        self._played_order.append(entry.seq)
        self._played_set.add(entry.seq)
        if len(self._played_order) > _PLAYED_MEMORY:
            self._played_set.discard(self._played_order.popleft())
        if entry.packet.payload_type in self._ignore:
            self.stats.ignored += 1
            return
        self._emit(entry, hole, out)

    def _emit(self, entry: _Entry, hole: int, out: list[Item]) -> None:
        packet = entry.packet
        prev = self._prev
        position = 0
        if prev is not None:
            steps = 0 if self._resync or packet.marker else entry.seq - prev.seq
            duration = self._duration(prev, entry.ts - prev.ts, steps)
            expected = prev.position + duration
            wall = max(0, round((entry.arrival - prev.arrival) * self.clock_rate) - duration)
            reason = "loss" if hole > 0 else "silence"
            if self._resync:
                gap, reason = wall, "resync"
            else:
                gap = entry.ts - prev.ts - duration
                plausible = (entry.arrival - prev.arrival + _GAP_SLACK_S) * self.clock_rate
                if gap < 0 or gap > plausible:
                    gap, reason = wall, "resync"
            if gap > 0:
                out.append(Gap(gap, expected, reason))
                self.stats.gap_samples += gap
                if reason == "loss":
                    self.stats.lost_samples += gap
            position = expected + gap
        self._resync = False
        self._last_ts = entry.ts
        self._prev = _Played(entry.seq, entry.ts, position, entry.arrival, packet)
        self.stats.played += 1
        out.append(
            Payload(
                payload=packet.payload,
                payload_type=packet.payload_type,
                position=position,
                timestamp=packet.timestamp,
                sequence=packet.sequence,
                ssrc=packet.ssrc,
                marker=packet.marker,
            )
        )

    def _duration(self, prev: _Played, ts_delta: int, steps: int) -> int:
        """Clock ticks covered by ``prev``: the codec's word, else the timestamp step to its
        in-sequence successor, else the learned ptime, else (before any pair of in-sequence
        packets was seen) the timestamp step over a hole divided evenly, else ``ptime_ms``.
        ``steps`` is the sequence distance to the next packet, 0 when timestamps don't count."""
        per_step = ts_delta // steps if steps > 0 and ts_delta % steps == 0 else 0
        if steps == 1 and 0 < per_step <= self._max_ptime:
            self._ptime = per_step
        if self._duration_of is not None:
            told = self._duration_of(prev.packet.payload_type, prev.packet.payload)
            if told is not None and told > 0:
                return told
        if steps == 1 and 0 < per_step <= self._max_ptime:
            return per_step
        if self._ptime is not None:
            return self._ptime
        if 0 < per_step <= self._max_ptime:
            return per_step
        return self._default_ptime
