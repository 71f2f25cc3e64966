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

from streamd.errors import ProtocolError
from streamd.ingest.rtp import PortPool, PortsExhausted, RtpCounters, RtpLimits, RtpReceiver, Warn
from streamd.ingest.sip.transport import phrase
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubRefused
from streamd.protocols.sip.headers import parse_name_addr
from streamd.protocols.sip.message import Headers, SipError, SipRequest
from streamd.protocols.sip.sdp import (
    Answer,
    AnsweredMedia,
    SessionDescription,
    build_answer,
    parse_sdp,
)
from streamd.protocols.sip.siprec import CONTENT_TYPE as METADATA_TYPE
from streamd.protocols.sip.siprec import RecordingMetadata, StreamOwner, parse_metadata

if TYPE_CHECKING:
    from streamd.ingest.sip.transport import Peer, Transaction
    from streamd.pipeline.hub import StreamHub

log = logging.getLogger("streamd.ingest.sip.server")

DEFAULT_LEGS = ("caller", "agent")
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
ACCEPT = f"application/sdp, {METADATA_TYPE}, multipart/mixed"
EXTENSIONS = frozenset({"siprec"})


class Rejected(Exception):
    """An offer we answer with an error status (and a reason phrase that says why)."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


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


@dataclass
class Dialog:
    """RFC 3261 §12.1.1 (UAS side), enough to match requests and send our own BYE."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    from_value: str  # the INVITE's From header, as received (their identity, with their tag)
    to_value: str  # the INVITE's To header, without our tag
    from_uri: str
    to_uri: str
    remote_target: str
    route_set: list[str]
    remote_cseq: int
    local_cseq: int = 0

    @classmethod
    def of(cls, invite: SipRequest) -> Dialog:
        contact = invite.headers.get("Contact")
        target = parse_name_addr(contact).uri if contact else invite.from_.uri
        return cls(
            call_id=invite.call_id,
            local_tag=secrets.token_hex(8),
            remote_tag=invite.from_tag,
            from_value=invite.headers.get("From") or "",
            to_value=invite.headers.get("To") or "",
            from_uri=invite.from_.uri,
            to_uri=invite.to.uri,
            remote_target=target,
            route_set=invite.headers.get_all("Record-Route"),
            remote_cseq=invite.cseq[0],
        )

    def bye(self, via_host: str, via_port: int, transport: str) -> tuple[str, bytes]:
        """Our BYE (RTP timeout, shutdown) and its branch: From is their To with our tag, To is
        their From, the route set is the INVITE's Record-Route in order (§12.1.1)."""
        self.local_cseq += 1
        host = f"[{via_host}]" if ":" in via_host else via_host
        branch = f"z9hG4bK{secrets.token_hex(10)}"
        headers = Headers(
            [
                ("Via", f"SIP/2.0/{transport} {host}:{via_port};branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"{self.to_value};tag={self.local_tag}"),
                ("To", self.from_value),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.local_cseq} BYE"),
                *[("Route", r) for r in self.route_set],
                ("Reason", 'SIP;cause=200;text="streamd ended the recording"'),
            ]
        )
        return branch, SipRequest(headers, b"", "BYE", self.remote_target).to_bytes()


@dataclass
class SipCall:
    dialog: Dialog
    peer: Peer
    ctx: MediaContext
    invite_tx: Transaction | None = None
    state: str = "proceeding"  # proceeding -> confirmed -> ended
    cancelled: bool = False
    negotiating: bool = False  # an offer is being answered: another one gets 491
    metadata: RecordingMetadata | None = None
    receivers: dict[int, RtpReceiver] = field(default_factory=dict)
    sdp_session: int = field(default_factory=lambda: secrets.randbelow(2**31))
    sdp_version: int = -1
    last_answer: bytes = b""
    used_ids: set[str] = field(default_factory=set)
    ending: asyncio.Task[None] | None = None
    side_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    async def negotiate(
        self, offer: SessionDescription, metadata: RecordingMetadata | None
    ) -> Answer:
        """Answer an offer: bind ports for new m-lines, open their streams, retune the others.

        Raises :class:`Rejected` (nothing changed) or :class:`Cancelled`. Everything after the
        last ``await`` is synchronous, so a CANCEL can only land before the call commits."""
        ctx = self.ctx
        ip = ctx.local_ip(self.peer.ip)
        trial = build_answer(offer, ip, [9] * len(offer.media), ctx.codecs)
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
        """End every stream (buffered audio scored first); idempotent, returns the one task."""
        if self.ending is None:
            self.state = "ended"
            receivers, self.receivers = list(self.receivers.values()), {}
            self.ending = asyncio.create_task(self._finish(receivers, reason))
        return self.ending

    async def _finish(self, receivers: list[RtpReceiver], reason: str) -> None:
        await asyncio.gather(*(r.finish(reason) for r in receivers), *self.side_tasks)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """A stream ended mid-call (m-line removed): :meth:`end` waits for it too."""
        task = asyncio.create_task(coro)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def timed_out(self, now: float, timeout_s: float) -> list[RtpReceiver]:
        """Receivers that expected media and got none for ``timeout_s``: removed from the call."""
        idle = [i for i, r in self.receivers.items() if r.idle_s(now) > timeout_s]
        return [self.receivers.pop(i) for i in idle]


def check_require(req: SipRequest) -> None:
    unknown = [o for o in req.headers.get_all("Require") if o.lower() not in EXTENSIONS]
    if unknown:
        raise Rejected(420, "Bad Extension", [("Unsupported", ", ".join(unknown))])


def read_offer(
    req: SipRequest, initial: bool
) -> tuple[SessionDescription | None, RecordingMetadata | None]:
    """The SDP offer and SIPREC metadata in a body (plain SDP or multipart/mixed)."""
    if req.headers.get("Content-Encoding") not in (None, "identity"):
        raise Rejected(
            415, "Unsupported Media Type (Content-Encoding)", [("Accept-Encoding", "identity")]
        )
    try:
        parts = req.body_parts()
    except SipError as exc:
        raise Rejected(400, f"Bad Request ({phrase(str(exc))})") from None
    sdp = [p for p in parts if p.content_type == "application/sdp"]
    meta = [p for p in parts if p.content_type == METADATA_TYPE]
    if parts and not sdp and not meta:
        raise Rejected(415, "Unsupported Media Type", [("Accept", ACCEPT)])
    if initial and not sdp:
        raise Rejected(488, "Not Acceptable Here (an INVITE without an SDP offer is not supported)")
    what = "SDP"
    try:
        offer = parse_sdp(sdp[0].body) if sdp else None
        what = "recording metadata"
        metadata = parse_metadata(meta[0].body) if meta else None
    except ProtocolError as exc:
        raise Rejected(400, f"Bad Request ({what}: {phrase(str(exc))})") from None
    return offer, metadata
