"""RTP receive for SIP calls: even ports from ``rtp_ports``, one datagram endpoint per m-line.

Each accepted m-line gets its own socket and :class:`RtpReceiver`, a thin adapter over the
sans-I/O :class:`~streamd.protocols.jitter.JitterBuffer`: parse, push, pop what is ready, decode,
write to the stream, and arm one timer for when a hole has waited long enough. Loss becomes
silence of the same length (capped at ``max_gap_s``, so a long hold or a spoofed jump cannot
allocate gigabytes), and lost packets are counted into the stream's ``frames_lost``.

Which packets count. Before the first good packet the receiver accepts RTP from the address in
the SDP, or from any address in ``allow_from`` (a NATed or load-balanced SBC often sends from
another port or host than it signals); the first packet that parses and carries a negotiated
payload type *latches* the receiver to its source (symmetric RTP, as SBCs expect). After that,
packets from elsewhere are counted ``foreign`` and dropped. Another address may take the
stream over only in two cases, so a host that merely can reach the port cannot hijack a call:

- a re-INVITE (or UPDATE) whose answer has a different remote address or port resets the latch;
- sender failover: the latched source has been silent for ``RELATCH_S``, and the new packet
  continues the latched stream: same SSRC as its audio, a sequence number 1 to
  ``RELATCH_MAX_SEQ`` ahead of the last one taken (mod 2^16), from an address in the SDP or
  ``allow_from``. An off-path sender cannot guess a 32-bit SSRC; a failed attempt is counted
  ``hijack_refused``. With SRTP every packet must also authenticate with the call's key
  (failures are counted ``srtp_failed``), before anything else looks at it. telephone-event and
  comfort noise are only taken from the audio's SSRC (sipp and some
PBXs send DTMF with an SSRC of its own, which would otherwise look like a source change).

Hold. While the answer says ``inactive`` (the peer will not send) the inactivity timeout is off
(``hold_timeout_s`` ends a stream held longer), and media that resumes starts a fresh jitter buffer:
time on hold is not stream time, whether the sender's timestamps jumped over it or not. A codec
change does the same, and switches the stream's resampler (``set_sample_rate``) first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from streamd.codecs import CodecError, Decoder, make_decoder
from streamd.ingest.rtp_ports import PortPool
from streamd.ingest.srtp import SrtpReceiver
from streamd.protocols.jitter import Gap, JitterBuffer, Payload
from streamd.protocols.rtp import RtpError, RtpPacket, is_rtcp, parse_rtp
from streamd.protocols.sip.sdp import AnsweredMedia

if TYPE_CHECKING:
    from streamd.pipeline.stream import StreamPipeline

log = logging.getLogger("streamd.ingest.rtp")

CN_PAYLOAD_TYPE = 13  # RFC 3389 comfort noise: fills holes, never decoded
RELATCH_S = 2.0
RELATCH_MAX_SEQ = 3000  # a minute of 20 ms packets
WRITE_BLOCK_MS = 60
Warn = Callable[..., None]


@dataclass(frozen=True)
class RtpLimits:
    max_packet_bytes: int = 2048
    jitter_ms: float = 60.0
    max_gap_s: float = 60.0
    ptime_ms: float = 20.0


@dataclass
class RtpCounters:
    """Per source, summed over every receiver; plain ints, cheap to bump per packet."""

    packets: int = 0
    bytes: int = 0
    junk: int = 0  # datagrams that are not RTP
    oversize: int = 0  # over max_packet_bytes
    rtcp: int = 0  # RTCP multiplexed on the RTP port (RFC 5761): not used
    foreign: int = 0  # from an address other than the latched or allowed ones
    wrong_pt: int = 0  # payload type not in the answer
    ignored: int = 0  # telephone-event/CN on an SSRC other than the audio's
    decode_errors: int = 0
    gaps_capped: int = 0
    latches: int = 0
    srtp_failed: int = 0  # SRTP packets that did not authenticate (wrong key, tampered, replay)
    hijack_refused: int = 0  # another address after the silence, not continuing the stream
    timeouts: int = 0
    hold_timeouts: int = 0  # streams ended by hold_timeout_s
    jitter_closed: Counter[str] = field(default_factory=Counter)  # JitterStats of ended receivers


def _is_ip(text: str | None) -> bool:
    try:
        return text is not None and not ipaddress.ip_address(text).is_unspecified
    except ValueError:
        return False


class RtpReceiver(asyncio.DatagramProtocol):
    """One m-line's RTP: source check, jitter buffer, decoder, and the stream it writes to."""

    def __init__(
        self,
        pool: PortPool,
        port: int,
        limits: RtpLimits,
        counters: RtpCounters,
        allowed: Callable[[str], bool],
        warn: Warn,
        name: str,
    ) -> None:
        self.pool = pool
        self.port = port
        self.limits = limits
        self.counters = counters
        self.allowed = allowed
        self.warn = warn
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.stream: StreamPipeline | None = None
        self.media: AnsweredMedia | None = None
        self.decoder: Decoder | None = None
        self.buffer: JitterBuffer | None = None
        self.audio_pt = -1
        self.payload_types: frozenset[int] = frozenset()
        self.latched: tuple[str, int] | None = None
        self.srtp: SrtpReceiver | None = None
        self.expecting = False
        self.held_since: float | None = None
        self.last_valid = self.loop.time()
        self.closed = False
        self.jitter_totals: Counter[str] = Counter()
        self._codec_key: tuple[Any, ...] | None = None
        self._audio_ssrc: int | None = None
        self._last_ssrc: int | None = None
        self._last_seq: int | None = None  # the audio SSRC's last sequence number taken
        self._lost_noted = 0
        self._ptime_ticks = 160
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._block = 480
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        pool: PortPool,
        limits: RtpLimits,
        counters: RtpCounters,
        allowed: Callable[[str], bool],
        warn: Warn,
        name: str,
    ) -> RtpReceiver:
        sock = pool.bind()
        port = int(sock.getsockname()[1])
        receiver = cls(pool, port, limits, counters, allowed, warn, name)
        try:
            await receiver.loop.create_datagram_endpoint(lambda: receiver, sock=sock)
        except BaseException:
            sock.close()
            pool.release(port)
            raise
        return receiver

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do, we never send
        log.debug("%s: %s", self.name, exc)

    # -- negotiation ---------------------------------------------------------------------------

    def configure(self, media: AnsweredMedia) -> None:
        """Apply an accepted m-line of an answer (first INVITE or re-INVITE)."""
        codec, event = media.codec, media.telephone_event
        if codec is None:
            raise CodecError(f"{self.name}: m-line {media.index} has no codec")
        if media.crypto is None:
            self.srtp = None
        elif self.srtp is None or self.srtp.crypto != media.crypto:  # a new key: a new session
            self.srtp = SrtpReceiver(media.crypto)
        remote = (media.remote_address or "", media.remote_port)
        if self.media is None or (self.media.remote_address, self.media.remote_port) != remote:
            self.latched = None
        expecting = media.direction == "recvonly" and _is_ip(media.remote_address)
        resumed = expecting and not self.expecting and self.media is not None
        if expecting and not self.expecting:
            self.last_valid = self.loop.time()  # a resumed hold starts the inactivity clock afresh
        if not expecting and (self.expecting or self.held_since is None):
            self.held_since = self.loop.time()
        self.expecting = expecting
        self.media = media
        key = (
            codec.encoding.upper(),
            codec.clock_rate,
            codec.channels,
            event.payload_type if event else None,
        )
        if key != self._codec_key or resumed:  # time on hold is not stream time: a fresh buffer
            self._switch_codec(media)
            self._codec_key = key
        self.audio_pt = codec.payload_type
        extra = {event.payload_type} if event is not None else set()
        self.payload_types = frozenset({codec.payload_type, CN_PAYLOAD_TYPE, *extra})

    def _switch_codec(self, media: AnsweredMedia) -> None:
        """New decoder and jitter buffer; what the old buffer holds is played out first."""
        codec, event = media.codec, media.telephone_event
        assert codec is not None
        decoder = make_decoder(codec.encoding, codec.clock_rate, codec.channels)
        if self.buffer is not None:
            self._emit(self.buffer.flush(), final=True)
            self.jitter_totals.update(self.buffer.stats.as_dict())
        ignore = {CN_PAYLOAD_TYPE} | ({event.payload_type} if event is not None else set())
        self.decoder = decoder
        self.buffer = JitterBuffer(
            codec.clock_rate,
            target_ms=self.limits.jitter_ms,
            ptime_ms=self.limits.ptime_ms,
            duration_of=self._duration_of,
            ignore_payload_types=ignore,
        )
        self._lost_noted = 0
        self._block = round(decoder.sample_rate * WRITE_BLOCK_MS / 1000)
        self._audio_ssrc = self._last_ssrc = self._last_seq = None
        self._ptime_ticks = max(1, round(codec.clock_rate * self.limits.ptime_ms / 1000))
        if self.stream is not None:
            self.stream.set_sample_rate(decoder.sample_rate)

    def _duration_of(self, payload_type: int, payload: bytes) -> int | None:
        if payload_type != self.audio_pt or self.decoder is None:
            return None
        return self.decoder.duration(payload)

    @property
    def codec_name(self) -> str | None:
        codec = self.media.codec if self.media else None
        return f"{codec.encoding}/{codec.clock_rate}" if codec else None

    @property
    def sample_rate(self) -> int:
        assert self.decoder is not None
        return self.decoder.sample_rate

    def attach(self, stream: StreamPipeline) -> None:
        self.stream = stream
        self.last_valid = self.loop.time()

    # -- the drive loop ------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        c = self.counters
        if self.closed or self.stream is None or self.buffer is None:
            return
        if len(data) > self.limits.max_packet_bytes:
            c.oversize += 1
            return
        source = (str(addr[0]), int(addr[1]))
        now = self.loop.time()
        relatch = self.latched is not None and source != self.latched
        if relatch and (now - self.last_valid < RELATCH_S or not self._candidate(source[0])):
            c.foreign += 1
            return
        if is_rtcp(data):
            c.rtcp += 1
            return
        if self.srtp is not None:
            plain = self.srtp.unprotect(data)
            if plain is None:
                c.srtp_failed += 1
                return
            data = plain
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            c.junk += 1
            self.warn("%s: junk datagram from %s:%d: %s", self.name, *source, exc)
            return
        if relatch and not self._continues(packet):
            c.foreign += 1
            c.hijack_refused += 1
            where = (self.name, *source, packet.ssrc, packet.sequence)
            self.warn("%s: RTP from %s:%d (SSRC %08x seq %d) does not continue the stream", *where)
            return
        if self.latched is None and not self._candidate(source[0]):
            c.foreign += 1
            return
        pt = packet.payload_type
        if pt == self.audio_pt:
            self._audio_ssrc = packet.ssrc
            self._last_seq = packet.sequence
        elif pt not in self.payload_types:
            c.wrong_pt += 1
            self.warn("%s: payload type %d from %s:%d is not in the answer", self.name, pt, *source)
            return
        elif packet.ssrc != self._audio_ssrc:
            c.ignored += 1
            return
        if source != self.latched:
            log.info("%s: RTP from %s:%d%s", self.name, *source, " (re-latched)" if relatch else "")
            self.latched = source
            c.latches += 1
        self.last_valid = now
        c.packets += 1
        c.bytes += len(data)
        self.buffer.push(packet, now)
        self._drain(now)

    def _continues(self, packet: RtpPacket) -> bool:
        """Failover, not hijack: the audio's SSRC, its sequence a little ahead."""
        if self._last_seq is None or packet.ssrc != self._audio_ssrc:
            return False
        return 0 < (packet.sequence - self._last_seq) % 65536 <= RELATCH_MAX_SEQ

    def _candidate(self, ip: str) -> bool:
        media = self.media
        return (media is not None and ip == media.remote_address) or self.allowed(ip)

    def _drain(self, now: float) -> None:
        assert self.buffer is not None
        self._emit(self.buffer.pop(now))
        self._arm(self.buffer.deadline())

    def _arm(self, deadline: float | None) -> None:
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        self._timer = None
        if not self.closed:
            self._drain(max(self.loop.time(), deadline))

    def _write_pending(self) -> None:
        """One write per block: the pipeline's cost (resampler, VAD) is mostly per call, not
        per sample, so 20 ms packets are handed over three at a time (``WRITE_BLOCK_MS``)."""
        pending, self._pending, self._pending_samples = self._pending, [], 0
        if self.stream is not None and pending:
            self.stream.write(pending[0] if len(pending) == 1 else np.concatenate(pending))

    def _emit(self, items: list[Payload | Gap], final: bool = False) -> None:
        decoder, stream, buffer = self.decoder, self.stream, self.buffer
        assert decoder is not None and buffer is not None
        max_gap = int(self.limits.max_gap_s * decoder.clock_rate)
        for item in items:
            pcm: np.ndarray
            if isinstance(item, Gap):
                ticks = item.samples
                if ticks > max_gap:
                    self.counters.gaps_capped += 1
                    self.warn(
                        "%s: %s gap of %.1f s written as %.1f s of silence (max_gap_s)",
                        self.name,
                        item.reason,
                        ticks / decoder.clock_rate,
                        max_gap / decoder.clock_rate,
                    )
                    ticks = max_gap
                pcm = decoder.silence(ticks)
            else:
                if item.ssrc != self._last_ssrc:
                    if self._last_ssrc is not None:
                        decoder.reset()
                    self._last_ssrc = item.ssrc
                try:
                    pcm = decoder.decode(item.payload)
                except CodecError as exc:
                    self.counters.decode_errors += 1
                    self.warn("%s: %s", self.name, exc)
                    pcm = decoder.silence(decoder.duration(item.payload) or self._ptime_ticks)
            if len(pcm):
                self._pending.append(pcm)
                self._pending_samples += len(pcm)
        if self._pending_samples >= self._block or (final and self._pending):
            self._write_pending()
        lost = buffer.stats.lost_packets
        if stream is not None and lost > self._lost_noted:
            stream.note_lost(lost - self._lost_noted)
            self._lost_noted = lost

    # -- life cycle ----------------------------------------------------------------------------

    def idle_s(self, now: float) -> float:
        """Seconds without good RTP while media is expected (0 on hold)."""
        return now - self.last_valid if self.expecting and not self.closed else 0.0

    def held_s(self, now: float) -> float:
        """Seconds on hold (0 while media is expected)."""
        if self.expecting or self.closed or self.held_since is None:
            return 0.0
        return now - self.held_since

    def stats(self) -> dict[str, int]:
        totals = Counter(self.jitter_totals)
        if self.buffer is not None:
            totals.update(self.buffer.stats.as_dict())
        return dict(totals)

    async def finish(self, reason: str) -> None:
        """Play out what the buffer holds, free the port, end the stream with ``reason``."""
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.buffer is not None and self.stream is not None:
            self._emit(self.buffer.flush(), final=True)
        self.closed = True
        self.counters.jitter_closed.update(self.stats())
        self.discard()
        stream, self.stream = self.stream, None
        if stream is not None:
            log.info("%s: ended (%s) jitter=%s", self.name, reason, self.stats())
            try:
                await stream.close(reason)
            except Exception:
                log.exception(
                    "%s: stream %s did not close cleanly", self.name, stream.info.stream_id
                )

    def discard(self) -> None:
        """Close the socket and free the port (also for a receiver whose call never answered)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.pool.release(self.port)
