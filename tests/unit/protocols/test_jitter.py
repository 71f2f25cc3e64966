"""Jitter buffer: reorder, duplicates, late packets, exact concealment, wraps, SSRC change,
latency."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.codecs import make_decoder
from streamd.protocols.jitter import Gap, Item, JitterBuffer, Payload
from streamd.protocols.rtp import RtpPacket, parse_rtp

from tests.helpers.rtp_samples import SIPP_PCAP, pcap_udp_payloads

RATE = 8000


def make_packets(
    n: int, ptime_ms: float = 20, seq0: int = 0, ts0: int = 0, ssrc: int = 1, pt: int = 0
) -> list[RtpPacket]:
    """PCMU-like packets (one byte per clock tick), payload bytes tagging the packet index."""
    ticks = round(ptime_ms * RATE / 1000)
    return [
        RtpPacket(
            pt, (seq0 + i) & 0xFFFF, (ts0 + i * ticks) & 0xFFFFFFFF, ssrc, bytes([i % 256]) * ticks
        )
        for i in range(n)
    ]


@dataclass
class Run:
    items: list[Item] = field(default_factory=list)
    out_time: dict[int, float] = field(default_factory=dict)  # (ssrc, seq) hash -> pop time

    @property
    def payloads(self) -> list[Payload]:
        return [i for i in self.items if isinstance(i, Payload)]

    @property
    def gaps(self) -> list[Gap]:
        return [i for i in self.items if isinstance(i, Gap)]


def drive(buffer: JitterBuffer, arrivals: list[tuple[float, RtpPacket]], flush: bool = True) -> Run:
    """Feed packets at their arrival times like a UDP adapter with a timer on deadline()."""
    run = Run()

    def take(items: list[Item], now: float) -> None:
        for item in items:
            run.items.append(item)
            if isinstance(item, Payload):
                run.out_time[hash((item.ssrc, item.sequence, item.timestamp))] = now

    for now, packet in sorted(arrivals, key=lambda a: a[0]):
        deadline = buffer.deadline()
        while deadline is not None and deadline <= now:
            take(buffer.pop(deadline), deadline)
            assert buffer.deadline() != deadline, "pop(deadline()) made no progress"
            deadline = buffer.deadline()
        buffer.push(packet, now)
        take(buffer.pop(now), now)
    end = (max(a[0] for a in arrivals) if arrivals else 0.0) + 1.0
    take(buffer.pop(end), end)
    if flush:
        take(buffer.flush(), end)
    return run


def on_time(
    packets: list[RtpPacket], ptime_ms: float = 20, start: float = 0.0
) -> list[tuple[float, RtpPacket]]:
    return [(start + i * ptime_ms / 1000, p) for i, p in enumerate(packets)]


def check_timeline(items: list[Item]) -> int:
    """Positions only move forward and each item starts where the previous one ended."""
    cursor: int | None = None
    for item in items:
        if cursor is not None:
            assert item.position == cursor, (item, cursor)
        length = item.samples if isinstance(item, Gap) else len(item.payload)
        assert length > 0
        cursor = item.position + length
    return cursor or 0


def test_in_order_stream_passes_straight_through() -> None:
    buffer = JitterBuffer(RATE)
    packets = make_packets(50)
    run = drive(buffer, on_time(packets))
    assert [p.payload for p in run.payloads] == [p.payload for p in packets]
    assert run.gaps == [] and check_timeline(run.items) == 50 * 160
    assert buffer.stats.played == 50 and buffer.stats.lost_packets == 0
    # Zero added latency: every packet leaves at its own arrival time.
    for now, p in on_time(packets):
        assert run.out_time[hash((p.ssrc, p.sequence, p.timestamp))] == now


def test_reordered_packets_come_out_in_order() -> None:
    packets = make_packets(6)
    order = [0, 1, 3, 2, 5, 4]
    arrivals = [(i * 0.02, packets[k]) for i, k in enumerate(order)]
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert [p.sequence for p in run.payloads] == [0, 1, 2, 3, 4, 5]
    assert run.gaps == [] and buffer.stats.reordered == 2 and buffer.stats.lost_packets == 0


def test_duplicates_are_dropped_whether_buffered_or_played() -> None:
    packets = make_packets(5)
    arrivals = [
        (0.00, packets[0]), (0.02, packets[1]), (0.021, packets[1]),  # played duplicate
        (0.04, packets[3]), (0.041, packets[3]),  # buffered duplicate (hole at 2)
        (0.05, packets[2]), (0.08, packets[4]),
    ]  # fmt: skip
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert [p.sequence for p in run.payloads] == [0, 1, 2, 3, 4]
    assert buffer.stats.duplicates == 2 and buffer.stats.received == 7


def test_late_packet_after_its_hole_was_concealed_is_dropped() -> None:
    packets = make_packets(5)
    buffer = JitterBuffer(RATE, target_ms=60)
    arrivals = [(0.0, packets[0]), (0.02, packets[1]), (0.06, packets[3]), (0.08, packets[4]),
                (0.20, packets[2])]  # fmt: skip
    run = drive(buffer, arrivals)
    assert [p.sequence for p in run.payloads] == [0, 1, 3, 4]
    assert [(g.samples, g.reason) for g in run.gaps] == [(160, "loss")]
    assert buffer.stats.late == 1 and buffer.stats.lost_packets == 1
    # The hole was given up target_ms after packet 3 arrived, not later.
    assert run.out_time[hash((1, 3, 480))] == pytest.approx(0.06 + 0.06)


@pytest.mark.parametrize("ptime_ms", [10, 20, 30, 60])
@pytest.mark.parametrize("lost", [1, 3, 25])
@pytest.mark.parametrize("with_codec", [False, True])
def test_loss_of_n_packets_is_exactly_n_ptimes_of_silence(
    ptime_ms: int, lost: int, with_codec: bool
) -> None:
    decoder = make_decoder("PCMU", RATE)
    buffer = JitterBuffer(
        RATE, duration_of=(lambda _pt, b: decoder.duration(b)) if with_codec else None
    )
    packets = make_packets(60, ptime_ms)
    keep = [p for i, p in enumerate(packets) if not 20 <= i < 20 + lost]
    run = drive(buffer, [(i * ptime_ms / 1000, p) for i, p in enumerate(packets) if p in keep])
    ticks = ptime_ms * RATE // 1000
    assert [g.samples for g in run.gaps] == [lost * ticks]
    assert buffer.stats.lost_packets == lost and buffer.stats.lost_samples == lost * ticks
    assert check_timeline(run.items) == 60 * ticks  # time never shortened


def test_real_sipp_pcap_with_loss_uses_its_30ms_ptime() -> None:
    if not SIPP_PCAP.exists():
        pytest.skip("sip-tester's g711a.pcap is not installed")
    packets = [parse_rtp(p) for p in pcap_udp_payloads(Path(SIPP_PCAP))][:100]
    dropped = {10, 11, 50}
    arrivals = [(i * 0.03, p) for i, p in enumerate(packets) if i not in dropped]
    buffer = JitterBuffer(RATE)  # no codec hint: ptime learned from timestamps
    run = drive(buffer, arrivals)
    assert [g.samples for g in run.gaps] == [480, 240]
    assert check_timeline(run.items) == 100 * 240


def test_timestamp_wrap_with_loss_across_it() -> None:
    packets = make_packets(20, ts0=2**32 - 5 * 160)
    arrivals = [(i * 0.02, p) for i, p in enumerate(packets) if i not in (4, 5, 6)]
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert [g.samples for g in run.gaps] == [3 * 160]
    assert run.payloads[4].timestamp < run.payloads[3].timestamp  # the raw value wrapped
    assert check_timeline(run.items) == 20 * 160


def test_sequence_wrap_with_loss_across_it() -> None:
    packets = make_packets(20, seq0=65530)
    arrivals = [(i * 0.02, p) for i, p in enumerate(packets) if p.sequence not in (65535, 0)]
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert [g.samples for g in run.gaps] == [2 * 160]
    assert buffer.stats.lost_packets == 2 and buffer.stats.restarts == 0
    assert [p.sequence for p in run.payloads][:6] == [65530, 65531, 65532, 65533, 65534, 1]


def test_ssrc_change_resyncs_without_jump_and_drops_stragglers() -> None:
    a = make_packets(50, seq0=1000, ts0=123456, ssrc=0xA)
    b = make_packets(50, seq0=7, ts0=3_000_000_000, ssrc=0xB)
    arrivals = on_time(a) + on_time(b, start=1.0)
    arrivals.append((1.01, a[-1]))  # a straggler from the old source right after the switch
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert buffer.stats.ssrc_changes == 1 and buffer.stats.late == 1
    assert [p.ssrc for p in run.payloads] == [0xA] * 50 + [0xB] * 50
    end = check_timeline(run.items)
    assert end == 100 * 160  # b started right after a ended: no gap, no negative jump
    assert all(g.reason == "resync" for g in run.gaps)


def test_ssrc_change_after_a_pause_keeps_wall_clock_time() -> None:
    a = make_packets(10, ssrc=1)
    b = make_packets(10, ts0=99, ssrc=2)
    buffer = JitterBuffer(RATE)
    run = drive(buffer, on_time(a) + on_time(b, start=0.2 + 0.5))
    assert [(g.samples, g.reason) for g in run.gaps] == [(4000, "resync")]  # 0.5 s of silence


def test_long_loss_burst_then_recovery_keeps_latency_bounded() -> None:
    rng = random.Random(7)
    packets = make_packets(1000)
    arrivals = [
        (i * 0.02 + rng.uniform(0, 0.04), p) for i, p in enumerate(packets) if not 300 <= i < 500
    ]
    buffer = JitterBuffer(RATE, target_ms=60)
    run = drive(buffer, arrivals)
    assert sum(g.samples for g in run.gaps if g.reason == "loss") == 200 * 160
    assert check_timeline(run.items) == 1000 * 160
    for now, p in arrivals:
        key = hash((p.ssrc, p.sequence, p.timestamp))
        if key in run.out_time:
            assert run.out_time[key] - now <= 0.060 + 1e-9
    assert buffer.stats.late <= 20 and buffer.depth_ms == 0


def test_burst_after_network_stall_skips_ahead_at_once() -> None:
    packets = make_packets(60)
    stall = [(2.0, p) for p in packets[21:50]]  # 29 packets land together, packet 20 lost
    arrivals = (
        on_time(packets[:20]) + stall + [(2.0 + (i - 49) * 0.02, packets[i]) for i in range(50, 60)]
    )
    buffer = JitterBuffer(RATE, target_ms=60, max_extra_ms=200)
    run = drive(buffer, arrivals)
    assert buffer.stats.skipped == 1
    assert run.out_time[hash((1, 21, 21 * 160))] == 2.0  # not held for the target delay
    assert check_timeline(run.items) == 60 * 160


def test_telephone_event_fills_sequence_but_is_not_output() -> None:
    audio = make_packets(20)
    packets = list(audio)
    for i in range(8, 11):  # DTMF replaces three audio packets, same seq space
        packets[i] = RtpPacket(101, i, 8 * 160, 1, b"\x01\x0a\x00\xa0")
    buffer = JitterBuffer(RATE, ignore_payload_types={101})
    run = drive(buffer, on_time(packets))
    assert {p.payload_type for p in run.payloads} == {0}
    assert buffer.stats.ignored == 3 and buffer.stats.played == 17
    assert [(g.samples, g.reason) for g in run.gaps] == [(3 * 160, "silence")]
    assert buffer.stats.lost_packets == 0 and check_timeline(run.items) == 20 * 160


def test_dtx_timestamp_jump_with_marker_is_silence_of_that_length() -> None:
    first = make_packets(5)
    second = [
        RtpPacket(0, 5 + i, 5 * 160 + 8000 + i * 160, 1, b"\x00" * 160, marker=i == 0)
        for i in range(5)
    ]
    buffer = JitterBuffer(RATE)
    run = drive(buffer, on_time(first) + on_time(second, start=0.1 + 1.0))
    assert [(g.samples, g.reason) for g in run.gaps] == [(8000, "silence")]


def test_implausible_timestamp_jump_uses_arrival_time() -> None:
    packets = make_packets(10)
    jumped = [RtpPacket(0, 10 + i, (10 * 160 + 3_600 * RATE * 10 + i * 160) & 0xFFFFFFFF, 1,
                        b"\x00" * 160)
              for i in range(10)]  # fmt: skip
    buffer = JitterBuffer(RATE)
    run = drive(buffer, on_time(packets + jumped))
    assert run.gaps == []  # ten hours of timestamps, 20 ms of wall clock: no giant gap
    assert check_timeline(run.items) == 20 * 160


def test_sequence_restart_on_same_ssrc_is_confirmed_by_two_packets() -> None:
    a = make_packets(10, seq0=100)
    b = make_packets(10, seq0=40000, ts0=10 * 160)
    bogus = RtpPacket(0, 20000, 0, 1, b"\x00" * 160)
    buffer = JitterBuffer(RATE)
    run = drive(buffer, [*on_time(a), (0.195, bogus), *on_time(b, start=0.2)])
    assert buffer.stats.restarts == 1 and buffer.stats.discarded == 1
    assert len(run.payloads) == 20 and check_timeline(run.items) == 20 * 160


def test_one_corrupt_packet_far_ahead_does_not_kill_the_stream() -> None:
    packets = make_packets(100)
    junk = RtpPacket(0, 2000, 77, 1, b"\x00" * 160)  # 1900 packets ahead, 38 s of claimed loss
    buffer = JitterBuffer(RATE)
    run = drive(buffer, [*on_time(packets[:50]), (0.985, junk), *on_time(packets[50:], start=1.0)])
    assert buffer.stats.discarded == 1 and buffer.stats.late == 0 and buffer.stats.restarts == 0
    assert run.gaps == [] and len(run.payloads) == 100


def test_real_long_outage_is_not_mistaken_for_junk() -> None:
    packets = make_packets(400)
    arrivals = [(i * 0.02, p) for i, p in enumerate(packets) if not 50 <= i < 350]  # 6 s lost
    buffer = JitterBuffer(RATE)
    run = drive(buffer, arrivals)
    assert buffer.stats.discarded == 0 and [g.samples for g in run.gaps] == [300 * 160]


def test_deadline_and_flush() -> None:
    packets = make_packets(5)
    buffer = JitterBuffer(RATE, target_ms=60)
    buffer.push(packets[0], 0.0)
    assert [p.sequence for p in buffer.pop(0.0) if isinstance(p, Payload)] == [0]
    assert buffer.deadline() is None
    buffer.push(packets[2], 0.04)
    buffer.push(packets[3], 0.06)
    assert buffer.pop(0.07) == [] and buffer.deadline() == pytest.approx(0.10)
    assert buffer.depth_ms == pytest.approx(60.0)
    items = buffer.flush()
    assert [type(i).__name__ for i in items] == ["Gap", "Payload", "Payload"]
    assert buffer.flush() == [] and buffer.deadline() is None


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 80),
    drops=st.sets(st.integers(0, 79), max_size=30),
    dups=st.sets(st.integers(0, 79), max_size=10),
    delays=st.lists(st.floats(0, 0.15), min_size=80, max_size=80),
    ptime=st.sampled_from([10, 20, 30]),
    hint=st.booleans(),
)
def test_property_order_uniqueness_and_accounting(
    n: int, drops: set[int], dups: set[int], delays: list[float], ptime: int, hint: bool
) -> None:
    packets = make_packets(n, ptime, seq0=65500, ts0=2**32 - 1000)
    arrivals = [(i * ptime / 1000 + delays[i], p) for i, p in enumerate(packets) if i not in drops]
    arrivals += [(i * ptime / 1000 + delays[-1 - i], packets[i]) for i in dups if i < n]
    buffer = JitterBuffer(RATE, duration_of=(lambda _pt, b: len(b)) if hint else None)
    run = drive(buffer, arrivals)
    indices = [p.payload[0] for p in run.payloads]
    assert indices == sorted(set(indices))  # strictly increasing: in order, no duplicates
    check_timeline(run.items)
    s = buffer.stats
    assert s.received == len(arrivals)
    assert s.received == s.played + s.duplicates + s.late + s.discarded
    if run.payloads:
        span = run.payloads[-1].payload[0] - run.payloads[0].payload[0] + 1
        assert check_timeline(run.items) - run.payloads[0].position == span * ptime * RATE // 1000
