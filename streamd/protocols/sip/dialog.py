"""One call as the UAS sees it (RFC 3261 §12, UAS side), and reading the offers in its requests.

:class:`Dialog` is what matches in-dialog requests and builds our own BYE; :class:`Call` is the
dialog's state in :class:`~streamd.protocols.sip.uas.Uas` (answered yet, an offer being
answered, the answer to repeat on a session refresh). What an offer *becomes* (ports, streams)
is the adapter's business: :mod:`streamd.ingest.sip.call`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from streamd.errors import ProtocolError
from streamd.protocols.sip.headers import parse_name_addr
from streamd.protocols.sip.malformed import phrase
from streamd.protocols.sip.message import Headers, SipError, SipRequest
from streamd.protocols.sip.sdp import SessionDescription, parse_sdp
from streamd.protocols.sip.siprec import CONTENT_TYPE as METADATA_TYPE
from streamd.protocols.sip.siprec import RecordingMetadata, parse_metadata
from streamd.protocols.sip.transaction import Peer, ServerTransaction

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


@dataclass(eq=False)
class Call:
    """A dialog's state in the UAS; the adapter keeps the media that goes with it."""

    dialog: Dialog
    peer: Peer
    invite_tx: ServerTransaction | None = None  # the INVITE that set the call up
    unacked: dict[int, ServerTransaction] = field(default_factory=dict, repr=False)  # 2xx, by CSeq
    state: str = "proceeding"  # proceeding -> confirmed -> ended
    cancelled: bool = False
    negotiating: bool = False  # an offer is being answered: another one gets 491
    answered: bool = False  # an SDP answer went out: the call has a session (and gets a BYE)
    last_answer: bytes = b""
    pending: ServerTransaction | None = field(default=None, repr=False)  # its offer's request

    @property
    def call_id(self) -> str:
        return self.dialog.call_id


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
