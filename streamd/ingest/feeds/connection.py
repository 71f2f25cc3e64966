"""The one loop that turns contact-center feed events into streams, shared by all four adapters.

Each adapter (Twilio, AudioHook, audio fork, AudioSocket) owns a transport and hands what it
reads to a sans-I/O session (``streamd.protocols``). Everything after the session happens here,
once, so the four cannot drift apart: legs open on the hub, audio and gaps go in, replies go
out, violations are logged (rate-limited: a hostile peer must not flood the journal), and every
open leg is closed when the connection ends, however it ends, so ``stream.ended`` always comes.

A gap becomes silence of the same length, up to ``max_gap_s``: a bogus timestamp jump or an
hour-long pause must not allocate gigabytes of zeros. The frames-to-queue latency (a message read
off the socket to a window it completes being queued for scoring) is measured through the hub's
``window_queued`` hook and reported, with the counters, in ``status()``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from streamd.ingest.base import Source
from streamd.ingest.ratelog import RateLimitedLog
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubObserver, HubRefused
from streamd.protocols.feeds.base import (
    CLOSE_POLICY,
    Audio,
    Disconnect,
    FeedEvent,
    Gap,
    Notice,
    ProtocolViolation,
    Reply,
    StreamClosed,
    StreamOpened,
)

if TYPE_CHECKING:
    from streamd.pipeline.hub import StreamHub
    from streamd.pipeline.stream import StreamPipeline

log = logging.getLogger("streamd.ingest.feeds.connection")

CLOSE_TRY_AGAIN = 1013  # websocket close code: over capacity, retry later
SILENCE_CHUNK_S = 1.0  # long gaps are written in pieces, yielding to the loop between them
STOP_TIMEOUT_S = 10.0
LATENCY_SAMPLES = 4096

Send = Callable[[dict[str, Any]], Awaitable[None]]
Close = Callable[[], Awaitable[Any]]


class Session(Protocol):
    """The part of a sans-I/O feed session the dispatcher needs (``FeedSession`` has it)."""

    def connection_lost(self) -> list[FeedEvent]: ...


@dataclass(frozen=True)
class FeedLimits:
    max_connections: int = 100
    max_message_bytes: int = 64 * 1024
    max_gap_s: float = 60.0
    max_per_source: int = 20  # connections from one address, or with one credential

    @classmethod
    def of(cls, section: Any) -> FeedLimits:
        return cls(
            section.max_connections,
            section.max_message_bytes,
            section.max_gap_s,
            section.max_connections_per_source,
        )


@dataclass
class FeedCounters:
    """What ``status()`` (and so ``/readyz``) reports per feed; plain ints, cheap to bump."""

    accepted: int = 0
    refused: int = 0  # over a limit, or the daemon starting or stopping
    unauthorized: int = 0
    streams: int = 0
    streams_refused: int = 0  # the hub said no to a leg (sources.max_streams)
    messages: int = 0
    bytes: int = 0
    violations: int = 0
    fatal: int = 0
    abrupt: int = 0  # connections that ended without the protocol's goodbye
    gaps: int = 0
    gap_s: float = 0.0
    gaps_capped: int = 0
    frames_lost: int = 0
    idle_dropped: int = 0  # connections that completed no frame or message in time
    refused_per_source: int = 0  # over max_connections_per_source (address or credential)
    notices: Counter[str] = field(default_factory=Counter)


class LatencyWindow:
    """The last ``LATENCY_SAMPLES`` latencies, for percentiles in ``status()`` and the bench."""

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, seconds: float) -> None:
        self.values.append(seconds)
        self.count += 1

    def summary(self) -> dict[str, float | int | None]:
        if not self.values:
            return {"n": self.count, "p50_ms": None, "p99_ms": None, "max_ms": None}
        ms = np.asarray(self.values) * 1000.0
        return {
            "n": self.count,
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3),
        }


class _QueueLatency(HubObserver):
    """Times a window queued while one of this feed's frames is being written."""

    def __init__(self, source: FeedSource) -> None:
        self.source = source

    def window_queued(self, stream: StreamPipeline) -> None:
        arrival = self.source.arrival
        if arrival is not None:
            self.source.latency.add(time.perf_counter() - arrival)


class FeedConnection:
    """One transport connection: its session's legs on the hub, and the dispatch loop."""

    _ids = itertools.count(1)

    def __init__(
        self, source: FeedSource, peer: str, send: Send | None, close: Close | None
    ) -> None:
        self.source = source
        self.peer = peer
        self.id = next(self._ids)
        self.send = send
        self.close_transport = close
        self.streams: dict[str, StreamPipeline] = {}
        self.call_id = ""
        self.disconnect: Disconnect | None = None
        self.end_reason: str | None = None  # ours, when we end the legs (stopping, refused)
        self.done = asyncio.Event()
        self._closing: asyncio.Future[Any] | None = None
        self.keys: tuple[str, ...] = ()  # the source address and credential it counts against

    def __repr__(self) -> str:
        return f"{self.source.name} {self.peer}#{self.id}" + (
            f" call {self.call_id}" if self.call_id else ""
        )

    def count(self, nbytes: int) -> None:
        self.source.counters.messages += 1
        self.source.counters.bytes += nbytes

    async def feed(
        self, events: Iterable[FeedEvent], arrival: float | None = None
    ) -> Disconnect | None:
        """Apply a session's events in order; the session's (or our own) ``Disconnect``, if any."""
        for ev in events:
            match ev:
                case StreamOpened():
                    self._open(ev)
                case Audio():
                    stream = self.streams.get(ev.key)
                    if stream is not None:
                        self.source.write(stream, ev.samples, arrival)
                        if stream.cut_reason is not None:  # it outran real time: hang up
                            self._disconnect(
                                Disconnect(CLOSE_POLICY, "audio faster than real time")
                            )
                case Gap():
                    await self._gap(ev)
                case StreamClosed():
                    await self._close(ev.key, self.end_reason or ev.reason)
                case Reply():
                    await self._reply(ev.message)
                case Notice():
                    self.source.counters.notices[ev.kind] += 1
                    log.debug("%r: %s %s", self, ev.kind, ev.data)
                case ProtocolViolation():
                    self._violation(ev)
                case Disconnect():
                    self._disconnect(ev)
        return self.disconnect

    def _open(self, ev: StreamOpened) -> None:
        hub = self.source.hub
        self.call_id = self.call_id or ev.call_id
        stream_id = f"{ev.call_id}:{ev.leg}"
        if (
            hub is not None and stream_id in hub.streams
        ):  # the platform reconnected, or forked twice
            stream_id = f"{stream_id}:{self.source.name}{self.id}"
        info = StreamInfo.new(
            source=ev.source, leg=ev.leg, call_id=ev.call_id, stream_id=stream_id, labels=ev.labels
        )
        try:
            if hub is None:
                raise HubRefused("the source is not started")
            self.streams[ev.key] = hub.open_stream(info, ev.sample_rate)
        except HubRefused as exc:
            self.source.counters.streams_refused += 1
            self.source.warn("%r: leg %s refused, closing the connection: %s", self, ev.leg, exc)
            self.end_reason = self.end_reason or "refused"
            self._disconnect(Disconnect(CLOSE_TRY_AGAIN, f"over capacity: {exc}"))
            return
        self.source.counters.streams += 1

    async def _gap(self, ev: Gap) -> None:
        stream = self.streams.get(ev.key)
        if stream is None:
            return
        c = self.source.counters
        cap = int(self.source.limits.max_gap_s * stream.sample_rate)
        n = min(ev.n_samples, cap)
        c.gaps += 1
        c.gap_s += ev.n_samples / stream.sample_rate
        c.frames_lost += ev.frames
        if n < ev.n_samples:
            c.gaps_capped += 1
            self.source.warn(
                "%r: %s gap of %.1f s written as %.1f s of silence (max_gap_s)",
                self,
                ev.reason,
                ev.n_samples / stream.sample_rate,
                n / stream.sample_rate,
            )
        stream.note_lost(ev.frames)
        chunk = max(1, int(SILENCE_CHUNK_S * stream.sample_rate))
        for start in range(0, n, chunk):
            stream.write_silence(min(chunk, n - start))
            if n - start > chunk:
                await asyncio.sleep(0)

    async def _close(self, key: str, reason: str) -> None:
        stream = self.streams.pop(key, None)
        if stream is None:
            return
        try:
            await stream.close(reason)
        except Exception:
            log.exception("%r: stream %s did not close cleanly", self, stream.info.stream_id)

    async def _reply(self, message: dict[str, Any]) -> None:
        if self.send is None:
            return
        try:
            await self.send(message)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-reply
            log.debug("%r: reply %s not sent: %s", self, message.get("type"), exc)

    def _violation(self, ev: ProtocolViolation) -> None:
        c = self.source.counters
        c.violations += 1
        c.fatal += ev.fatal
        what = "closing" if ev.fatal else "dropped"
        self.source.warn("%r: protocol violation (%d, %s): %s", self, ev.code, what, ev.message)

    def _disconnect(self, ev: Disconnect) -> None:
        if self.disconnect is None:
            self.disconnect = ev
            log.info("%r: ending (%d %s)", self, ev.code, ev.reason)

    async def close_legs(self, reason: str) -> None:
        for key in list(self.streams):
            await self._close(key, reason)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Ask the transport to close (daemon stopping); ``finish`` then ends the legs."""
        self.end_reason = reason
        if self.close_transport is not None and self._closing is None:
            self._closing = asyncio.ensure_future(self.close_transport())

    async def finish(self, session: Session, clean: bool = False) -> None:
        """The transport is gone: end every leg still open, whatever the session thinks.

        ``clean``: the peer closed the transport properly (a websocket close frame, a TCP FIN);
        otherwise, with no goodbye from the protocol either, the drop counts as ``abrupt``.
        """
        try:
            if not clean and self.disconnect is None and self.end_reason is None:
                self.source.counters.abrupt += 1
                log.info("%r: connection dropped without a goodbye", self)
            await self.feed(session.connection_lost())
            await self.close_legs(self.end_reason or "disconnect")
        finally:
            self.source.release(self)
            self.done.set()


class FeedSource(Source):
    """What the four adapters share: limits, counters, the connections, and a clean stop."""

    name = "feed"

    def __init__(self, limits: FeedLimits) -> None:
        self.limits = limits
        self.counters = FeedCounters()
        self.connections: set[FeedConnection] = set()
        self.open_by: Counter[str] = Counter()  # open connections per address and credential
        self.latency = LatencyWindow()
        self.arrival: float | None = None  # set only while a frame is being written
        self.stopping = False
        self.hub: StreamHub | None = None  # type: ignore[assignment]
        self._log = RateLimitedLog(logging.getLogger(f"streamd.ingest.{self.name}"))

    async def start(self, hub: StreamHub) -> None:
        self.hub = hub
        hub.observers.append(_QueueLatency(self))

    def warn(self, msg: str, *args: object) -> None:
        self._log.warning(msg, *args)

    def write(self, stream: StreamPipeline, samples: np.ndarray, arrival: float | None) -> None:
        self.arrival = arrival
        try:
            stream.write(samples)
        finally:
            self.arrival = None

    def refusal(self, keys: tuple[str, ...] = ()) -> str | None:
        """Why a new connection cannot be taken now, checked before accepting it.

        ``keys`` are what the connection counts against besides the total: its source address
        and its credential, so one peer or one leaked key cannot take every slot."""
        hub = self.hub
        if hub is None or self.stopping or not hub.accepting:
            return "not accepting streams (starting or stopping)"
        if len(self.connections) >= self.limits.max_connections:
            return f"sources.{self.name}.max_connections ({self.limits.max_connections}) reached"
        for key in keys:
            if self.open_by[key] >= self.limits.max_per_source:
                self.counters.refused_per_source += 1
                limit = self.limits.max_per_source
                return f"sources.{self.name}.max_connections_per_source ({limit}) reached"
        if len(hub.streams) >= hub.config.sources.max_streams:
            return f"sources.max_streams ({hub.config.sources.max_streams}) reached"
        return None

    def connect(
        self,
        peer: str,
        send: Send | None = None,
        close: Close | None = None,
        keys: tuple[str, ...] = (),
    ) -> FeedConnection:
        conn = FeedConnection(self, peer, send, close)
        conn.keys = keys
        self.open_by.update(keys)
        self.connections.add(conn)
        self.counters.accepted += 1
        log.info("%r: connected (%d open)", conn, len(self.connections))
        return conn

    def release(self, conn: FeedConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.open_by.subtract(conn.keys)
            for key in conn.keys:
                if self.open_by[key] <= 0:
                    del self.open_by[key]

    async def stop(self) -> None:
        """Stop taking connections, close the open ones; their legs score what they hold and end."""
        self.stopping = True
        conns = list(self.connections)
        for conn in conns:
            conn.shutdown()
        if conns:
            waits = [asyncio.ensure_future(c.done.wait()) for c in conns]
            _, pending = await asyncio.wait(waits, timeout=STOP_TIMEOUT_S)
            for w in pending:
                w.cancel()
        for conn in list(self.connections):  # transports that did not close in time
            await conn.close_legs("shutdown")

    def status(self) -> dict[str, Any]:
        counters = asdict(self.counters)
        counters["gap_s"] = round(self.counters.gap_s, 3)
        counters["notices"] = dict(self.counters.notices)
        return {
            "name": self.name,
            "up": self.hub is not None and not self.stopping,
            "connections": len(self.connections),
            "max_connections": self.limits.max_connections,
            **counters,
            "frame_to_queue": self.latency.summary(),
        }
