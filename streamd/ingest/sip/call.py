"""One SIP call (a dialog) and its streams: what an INVITE's SDP and SIPREC metadata become.

Every accepted m-line is one stream (one :class:`RtpReceiver`). Who the stream is:

- **SIPREC** (the INVITE carries ``application/rs-metadata+xml``): the m-line's ``a=label`` is
  looked up in the metadata; the participant that *sends* that stream gives the ``leg``
  (``caller``/``agent`` by the rules in :mod:`streamd.protocols.sip.siprec`, ``participant`` when
  none applies) and the labels ``aor``, ``name``, ``participant_id``, ``siprec_session_id``,
  ``sip_session_id`` and ``role_rule``.
- **Otherwise** (or an m-line the metadata does not name): m-line 0 is ``caller``, m-line 1
  ``agent``, later ones ``mline<N>``; a plain call forked to us has one m-line, the caller.

Every stream also gets ``from``, ``to`` (URIs of the INVITE), ``sip_call_id``, ``mline``,
``codec`` and ``remote`` labels, and the SIP Call-ID as its ``call_id``. Labels are fixed when
the stream opens: metadata updates later in the call only name streams added after them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamd.ingest.rtp import RtpCounters, RtpLimits, RtpReceiver, Warn
from streamd.ingest.rtp_ports import PortPool, PortsExhausted
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubRefused
from streamd.protocols.sip.dialog import Call, Dialog, Rejected
from streamd.protocols.sip.malformed import phrase
from streamd.protocols.sip.sdp import Answer, AnsweredMedia, SessionDescription, build_answer
from streamd.protocols.sip.siprec import RecordingMetadata, StreamOwner

if TYPE_CHECKING:
    from streamd.pipeline.hub import StreamHub

log = logging.getLogger("streamd.ingest.sip.server")

DEFAULT_LEGS = ("caller", "agent")


class Cancelled(Exception):
    """The INVITE was CANCELed while we were setting the call up."""


@dataclass
class MediaContext:
    """What every call needs from its source; one per source."""

    hub: StreamHub
    pool: PortPool
    limits: RtpLimits
    counters: RtpCounters
    allowed: Callable[[str], bool]
    warn: Warn
    codecs: list[str]
    local_ip: Callable[[str], str]  # the address to advertise to a peer
    srtp: str = "off"  # sources.sip.srtp as this install can do it (build_answer's srtp)


@dataclass(eq=False)
class SipCall:
    """The media side of a :class:`~streamd.protocols.sip.dialog.Call`: its RTP receivers and
    streams, the SIPREC metadata that names them, the SDP session it answers with."""

    call: Call
    ctx: MediaContext
    cancelled: bool = False  # CANCELed (or dropped) while its first offer was being answered
    metadata: RecordingMetadata | None = None
    receivers: dict[int, RtpReceiver] = field(default_factory=dict)
    sdp_session: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = -1
    used_ids: set[str] = field(default_factory=set)
    ending: asyncio.Task[None] | None = None
    side_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def dialog(self) -> Dialog:
        return self.call.dialog

    @property
    def call_id(self) -> str:
        return self.call.call_id

    async def negotiate(
        self, offer: SessionDescription, metadata: RecordingMetadata | None
    ) -> Answer:
        """Answer an offer: bind ports for new m-lines, open their streams, retune the others.

        Raises :class:`Rejected` (nothing changed) or :class:`Cancelled`. Everything after the
        last ``await`` is synchronous, so a CANCEL can only land before the call commits."""
        ctx = self.ctx
        ip = ctx.local_ip(self.call.peer.ip)
        trial = build_answer(offer, ip, [9] * len(offer.media), ctx.codecs, srtp=ctx.srtp)
        if not trial.accepted_any:
            raise Rejected(488, "Not Acceptable Here (no audio m-line with a supported codec)")
        if len(offer.media) < len(self.receivers) or any(
            i >= len(offer.media) for i in self.receivers
        ):
            raise Rejected(400, "Bad Request (m-lines may not be removed from an offer)")
        wanted = [m.index for m in trial.media if m.accepted and m.index not in self.receivers]
        hub = ctx.hub
        if not hub.accepting or len(hub.streams) + len(wanted) > hub.config.sources.max_streams:
            raise Rejected(
                503, "Service Unavailable (sources.max_streams reached or shutting down)"
            )
        new: dict[int, RtpReceiver] = {}
        previous = self.metadata
        if metadata is not None:
            self.metadata = previous.merged(metadata) if previous else metadata
        try:
            for index in wanted:
                name = f"call {self.call_id} m{index}"
                try:
                    new[index] = await RtpReceiver.open(
                        ctx.pool, ctx.limits, ctx.counters, ctx.allowed, ctx.warn, name
                    )
                except PortsExhausted as exc:
                    raise Rejected(503, f"Service Unavailable ({phrase(str(exc))})") from None
                if self.cancelled:
                    raise Cancelled
            if self.cancelled:
                raise Cancelled
            ports = [
                (self.receivers.get(m.index) or new[m.index]).port if m.accepted else 0
                for m in trial.media
            ]
            self.sdp_version += 1
            answer = build_answer(
                offer,
                ip,
                ports,
                ctx.codecs,
                session_id=self.sdp_session,
                session_version=self.sdp_version,
                srtp=ctx.srtp,
            )
            for index, receiver in new.items():
                receiver.configure(answer.media[index])
            self._open_streams(new, answer)
        except BaseException:
            self.metadata = previous
            for receiver in new.values():
                receiver.discard()
            raise
        for m in answer.media:
            old = self.receivers.get(m.index)
            if old is not None and m.accepted:
                old.configure(m)  # hold/resume, codec change, new remote address
            elif old is not None:
                self._background(self.receivers.pop(m.index).finish("m-line removed"))
        self.receivers.update(new)
        return answer

    def _open_streams(self, new: dict[int, RtpReceiver], answer: Answer) -> None:
        opened = []
        try:
            for index, receiver in new.items():
                stream = self.ctx.hub.open_stream(
                    self._info(answer.media[index]), receiver.sample_rate
                )
                receiver.attach(stream)
                opened.append(receiver)
        except HubRefused as exc:
            for receiver in opened:
                self._background(receiver.finish("refused"))
            raise Rejected(503, f"Service Unavailable ({exc})") from None

    def _info(self, media: AnsweredMedia) -> StreamInfo:
        d = self.dialog
        codec = media.codec
        labels: dict[str, str] = {
            "from": d.from_uri,
            "to": d.to_uri,
            "sip_call_id": d.call_id,
            "mline": str(media.index),
            "codec": f"{codec.encoding}/{codec.clock_rate}" if codec else "",
            "remote": f"{media.remote_address}:{media.remote_port}",
        }
        if media.label is not None:
            labels["label"] = media.label
        owner = self._owner(media.label)
        if owner is not None:
            leg = owner.role or "participant"
            extra = {
                "aor": owner.aor,
                "name": owner.name,
                "participant_id": owner.participant_id,
                "siprec_session_id": owner.session_id,
                "sip_session_id": ",".join(owner.sip_session_ids) or None,
                "role_rule": owner.role_rule,
            }
            labels.update({k: v for k, v in extra.items() if v})
        else:
            leg = (
                DEFAULT_LEGS[media.index]
                if media.index < len(DEFAULT_LEGS)
                else f"mline{media.index}"
            )
        stream_id = self._unique_id(f"{d.call_id}:{leg}", media.index)
        return StreamInfo.new(
            source="sip", leg=leg, call_id=d.call_id, stream_id=stream_id, labels=labels
        )

    def _owner(self, label: str | None) -> StreamOwner | None:
        if label is None or self.metadata is None:
            return None
        return self.metadata.label_map().get(label)

    def _unique_id(self, base: str, index: int) -> str:
        streams = self.ctx.hub.streams
        candidate, n = base, 0
        while candidate in self.used_ids or candidate in streams:
            n += 1
            candidate = f"{base}:m{index}" + (f".{n}" if n > 1 else "")
        self.used_ids.add(candidate)
        return candidate

    # -- ending --------------------------------------------------------------------------------

    def end(self, reason: str) -> asyncio.Task[None]:
        """End every stream (buffered audio scored first); returns the one task. Streams an
        answer opened after an earlier end (a BYE raced the offer) are ended by a later call."""
        if self.ending is None or self.receivers:
            receivers, self.receivers = list(self.receivers.values()), {}
            self.ending = asyncio.create_task(self._finish(receivers, reason, self.ending))
        return self.ending

    async def _finish(
        self, receivers: list[RtpReceiver], reason: str, before: asyncio.Task[None] | None
    ) -> None:
        await asyncio.gather(*(r.finish(reason) for r in receivers), *self.side_tasks)
        if before is not None:
            await before

    def merge_metadata(self, metadata: RecordingMetadata) -> None:
        """A metadata-only update: it names streams opened after it."""
        self.metadata = self.metadata.merged(metadata) if self.metadata else metadata

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """A stream ended mid-call (m-line removed): :meth:`end` waits for it too."""
        task = asyncio.create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def timed_out(
        self, now: float, timeout_s: float, hold_s: float
    ) -> list[tuple[RtpReceiver, bool]]:
        """Receivers that expected media and got none for ``timeout_s``, or were on hold for
        ``hold_s``, removed from the call; with True for the held ones."""
        out = []
        for index, receiver in list(self.receivers.items()):
            if receiver.idle_s(now) > timeout_s or receiver.held_s(now) > hold_s:
                out.append((self.receivers.pop(index), receiver.held_s(now) > hold_s))
        return out
