"""SDP parsing (RFC 4566) and answering an offer (RFC 3264) for a receive-only analyser.

We never send media, so every accepted m-line is answered ``recvonly`` (or ``inactive`` when
the offerer will not send either). Each m-line gets exactly one audio codec, the first one in
the offer's order that we can decode, plus ``telephone-event`` when offered so DTMF does not
arrive as an unknown payload type. Unknown lines and attributes are kept, not rejected: SDP
from real SBCs is full of vendor attributes, and RFC 4566 §5 says to ignore what we don't know.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamd.errors import ProtocolError
from streamd.protocols.sip.sdes import SAVP_PROTOCOLS, Crypto, answer_crypto, choose

MAX_SDP_SIZE = 64 * 1024
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
DEFAULT_SUPPORTED = ("PCMU", "PCMA", "L16", "G722", "opus/48000/2")
RTP_PROTOCOLS = ("RTP/AVP", "RTP/AVPF")

#: RFC 3551 table 4: static audio payload types usable without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}

_LINE = re.compile(r"([a-z])=(.*)")
_NUM = re.compile(r"[0-9]{1,10}")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_MEDIA = re.compile(r"([^ ]+) ([0-9]{1,5})(?:/([0-9]{1,5}))? ([^ ]+)((?: [^ ]+)*) *")
_CONNECTION = re.compile(r"IN (IP4|IP6) ([^ /]+)(?:/[0-9]{1,10}){0,2} *")
_ORIGIN = re.compile(r"([^ ]+) ([0-9]{1,20}) ([0-9]{1,20}) IN (IP4|IP6) ([^ ]+) *")
_RTPMAP = re.compile(r"([0-9]{1,3}) +([^/ ]+)/([0-9]{1,7})(?:/([0-9]{1,2}))? *")


class SdpError(ProtocolError):
    """A session description that cannot be parsed or answered."""


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format of an m-line, with its RTP clock rate and channel count."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def rtpmap(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{suffix}"


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: int
    version: int
    addrtype: str
    address: str


@dataclass(slots=True)
class MediaDescription:
    """One m= section. ``direction`` and ``connection`` already fall back to session level."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int = 1
    connection: str | None = None
    addrtype: str = "IP4"
    own_connection: bool = False
    direction: str = "sendrecv"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The first value of ``a=name:value`` (``""`` for a flag), or None."""
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    @property
    def label(self) -> str | None:
        return self.attribute("label")

    @property
    def mid(self) -> str | None:
        return self.attribute("mid")

    @property
    def ptime(self) -> float | None:
        value = self.attribute("ptime")
        try:
            return (
                float(value)
                if value and re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", value)
                else None
            )
        except ValueError:  # pragma: no cover - the regex already filters
            return None

    def codecs(self) -> list[Codec]:
        """The m-line's payload formats in offer order; unknown dynamic types are left out."""
        rtpmaps: dict[int, tuple[str, int, int]] = {}
        fmtps: dict[int, str] = {}
        for key, value in self.attributes:
            if key == "rtpmap" and value is not None:
                match = _RTPMAP.fullmatch(value)
                if match is None:
                    raise SdpError(f"malformed a=rtpmap:{value}")
                pt, encoding, rate, channels = match.groups()
                if int(rate) == 0 or (channels is not None and int(channels) == 0):
                    raise SdpError(f"zero rate or channels in a=rtpmap:{value}")
                rtpmaps.setdefault(int(pt), (encoding, int(rate), int(channels or 1)))
            elif key == "fmtp" and value is not None:
                fmt, _, params = value.partition(" ")
                if _NUM.fullmatch(fmt):
                    fmtps.setdefault(int(fmt), params.strip())
        result: list[Codec] = []
        for fmt in self.formats:
            if not _NUM.fullmatch(fmt) or int(fmt) > 127:
                continue
            pt = int(fmt)
            known = rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if known is not None:
                result.append(Codec(pt, known[0], known[1], known[2], fmtps.get(pt)))
        return result


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: str | None = None
    addrtype: str = "IP4"
    direction: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def to_text(self) -> str:
        """Serialize with CRLF line ends (``a=`` lines in stored order)."""
        o = self.origin
        lines = [
            "v=0",
            f"o={o.username} {o.session_id} {o.version} IN {o.addrtype} {o.address}",
            f"s={self.session_name or '-'}",
        ]
        # RFC 4566 §5 order: v o s i u e p c b t r z k a, then the media sections.
        lines += [f"{k}={v}" for k, v in self.other_lines if k in "iuep"]
        if self.connection is not None:
            lines.append(f"c=IN {self.addrtype} {self.connection}")
        lines += [f"{k}={v}" for k, v in self.other_lines if k not in "iuep"]
        if not any(k == "t" for k, _ in self.other_lines):
            lines.append("t=0 0")
        lines += [_attr_line(k, v) for k, v in self.attributes]
        for m in self.media:
            ports = f"{m.port}/{m.port_count}" if m.port_count != 1 else str(m.port)
            lines.append(f"m={m.media} {ports} {m.proto} {' '.join(m.formats)}")
            lines += [f"{k}={v}" for k, v in m.other_lines if k == "i"]
            if m.own_connection and m.connection is not None:
                lines.append(f"c=IN {m.addrtype} {m.connection}")
            lines += [f"{k}={v}" for k, v in m.other_lines if k != "i"]
            lines += [_attr_line(k, v) for k, v in m.attributes]
        return "\r\n".join(lines) + "\r\n"


def _attr_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def parse_sdp(data: bytes | str, *, max_size: int = MAX_SDP_SIZE) -> SessionDescription:
    """Parse a session description; raise :class:`SdpError` on anything malformed."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > max_size:
            raise SdpError(f"SDP larger than {max_size} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("SDP is not UTF-8") from exc
    else:
        text = data
        if len(text) > max_size:
            raise SdpError(f"SDP larger than {max_size} characters")
    lines = [line for line in re.split(r"\r?\n", text) if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")

    origin: Origin | None = None
    session = SessionDescription(origin=Origin("-", 0, 0, "IP4", "0.0.0.0"))
    current: MediaDescription | None = None
    for raw in lines[1:]:
        match = _LINE.fullmatch(raw.rstrip(" \t"))
        if match is None:
            raise SdpError(f"malformed SDP line {raw[:60]!r}")
        kind, value = match.groups()
        if kind == "v":
            raise SdpError("second v= line")
        if kind == "m":
            current = _parse_media(value)
            session.media.append(current)
        elif kind == "o" and current is None:
            origin = _parse_origin(value)
        elif kind == "s" and current is None:
            session.session_name = value
        elif kind == "c":
            cmatch = _CONNECTION.fullmatch(value)
            if cmatch is None:
                raise SdpError(f"malformed c={value[:60]}")
            if current is None:
                session.addrtype, session.connection = cmatch.group(1), cmatch.group(2)
            else:
                current.addrtype, current.connection = cmatch.group(1), cmatch.group(2)
                current.own_connection = True
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            if not _TOKEN.fullmatch(name):
                raise SdpError(f"malformed attribute a={value[:60]}")
            attribute = (name, attr_value if sep else None)
            if current is None:
                session.attributes.append(attribute)
                if name in DIRECTIONS:
                    session.direction = name
            else:
                current.attributes.append(attribute)
        elif current is None:
            session.other_lines.append((kind, value))
        else:
            current.other_lines.append((kind, value))
    if origin is None:
        raise SdpError("SDP without o= line")
    session.origin = origin
    for m in session.media:
        if not m.own_connection:
            m.addrtype, m.connection = session.addrtype, session.connection
        if m.connection is None and m.port != 0:
            raise SdpError(f"m={m.media} has no c= line at media or session level")
        own = [name for name, _ in m.attributes if name in DIRECTIONS]
        m.direction = own[0] if own else session.direction or "sendrecv"
        m.codecs()  # validates rtpmap lines now rather than when answering
    return session


def _parse_origin(value: str) -> Origin:
    match = _ORIGIN.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed o={value[:60]}")
    user, sess_id, version, addrtype, address = match.groups()
    return Origin(user, int(sess_id), int(version), addrtype, address)


def _parse_media(value: str) -> MediaDescription:
    match = _MEDIA.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed m={value[:60]}")
    media, port, count, proto, formats = match.groups()
    if int(port) > 65535 or (count is not None and int(count) == 0):
        raise SdpError(f"bad port in m={value[:60]}")
    fmts = formats.split()
    if not fmts:
        raise SdpError("m= line without formats")
    return MediaDescription(media, int(port), proto, fmts, int(count or 1))


@dataclass(frozen=True, slots=True)
class AnsweredMedia:
    """What the answer did with one offered m-line, for the adapter that opens RTP ports."""

    index: int
    accepted: bool
    local_port: int
    codec: Codec | None
    telephone_event: Codec | None
    direction: str
    label: str | None
    remote_address: str | None
    remote_port: int
    crypto: Crypto | None = None  # SRTP (SDES): the offerer's key, which decrypts their media


@dataclass(frozen=True, slots=True)
class Answer:
    sdp: SessionDescription
    media: list[AnsweredMedia]

    @property
    def accepted_any(self) -> bool:
        """False means no usable m-line: the SIP layer answers 488."""
        return any(m.accepted for m in self.media)

    def to_text(self) -> str:
        return self.sdp.to_text()


def _wanted(supported: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    result: list[tuple[str, int | None, int | None]] = []
    for item in supported:
        parts = item.split("/")
        rate = int(parts[1]) if len(parts) > 1 else None
        channels = int(parts[2]) if len(parts) > 2 else None
        result.append((parts[0].lower(), rate, channels))
    return result


def _is_supported(codec: Codec, wanted: list[tuple[str, int | None, int | None]]) -> bool:
    return any(
        codec.encoding.lower() == name
        and (rate is None or rate == codec.clock_rate)
        and (channels is None or channels == codec.channels)
        for name, rate, channels in wanted
    )


_ANSWER_DIRECTION = {
    "sendrecv": "recvonly",
    "sendonly": "recvonly",  # they hold us (or they are a SIPREC recorder client): still listen
    "recvonly": "inactive",  # they will not send, and we never do
    "inactive": "inactive",
}


def build_answer(
    offer: SessionDescription,
    local_ip: str,
    ports_per_mline: Sequence[int],
    supported_codecs: Sequence[str] = DEFAULT_SUPPORTED,
    *,
    session_id: int = 0,
    session_version: int = 0,
    srtp: str = "off",
) -> Answer:
    """Answer ``offer`` (RFC 3264 §6): same m-lines in the same order; a port of 0 in
    ``ports_per_mline`` (or no supported codec, a non-audio or non-RTP m-line, a port of 0 in
    the offer) rejects that m-line. ``supported_codecs`` items are ``NAME[/rate[/channels]]``.
    Bump ``session_version`` for each new answer in the same dialog (re-INVITE).
    ``srtp``: ``off`` rejects RTP/SAVP m-lines; ``optional`` takes them when an ``a=crypto``
    line is usable (:mod:`streamd.protocols.sip.sdes`; the answer carries our own key) and
    takes RTP/AVP too; ``required`` rejects RTP/AVP."""
    if len(ports_per_mline) != len(offer.media):
        raise ValueError(f"{len(offer.media)} m-lines but {len(ports_per_mline)} ports")
    wanted = _wanted(supported_codecs)
    addrtype = "IP6" if ":" in local_ip else "IP4"
    answer = SessionDescription(
        origin=Origin("streamd", session_id, session_version, addrtype, local_ip),
        session_name="streamd",
        connection=local_ip,
        addrtype=addrtype,
    )
    results: list[AnsweredMedia] = []
    for index, (m, port) in enumerate(zip(offer.media, ports_per_mline, strict=True)):
        proto = m.proto.upper()
        crypto = None
        if proto in SAVP_PROTOCOLS and srtp != "off":
            crypto = choose([v for k, v in m.attributes if k == "crypto" and v])
        plain_ok = proto in RTP_PROTOCOLS and srtp != "required"
        codecs = m.codecs() if plain_ok or crypto is not None else []
        audio = [c for c in codecs if _is_supported(c, wanted)]
        events = [c for c in codecs if c.encoding.lower() == "telephone-event"]
        usable = m.media == "audio" and m.port != 0 and port != 0 and bool(audio)
        out = MediaDescription(m.media, 0, m.proto, list(m.formats))
        codec = event = None
        direction = "inactive"
        if usable:
            codec = audio[0]
            same_rate = [e for e in events if e.clock_rate == codec.clock_rate]
            event = same_rate[0] if same_rate else None
            direction = _ANSWER_DIRECTION[m.direction]
            out.port = port
            out.formats = [str(codec.payload_type)]
            out.attributes.append(("rtpmap", codec.rtpmap()))
            if event is not None:
                out.formats.append(str(event.payload_type))
                out.attributes.append(("rtpmap", event.rtpmap()))
                if event.fmtp:
                    out.attributes.append(("fmtp", f"{event.payload_type} {event.fmtp}"))
            if m.ptime is not None:
                out.attributes.append(("ptime", m.attribute("ptime")))
            out.attributes.append((direction, None))
            if crypto is not None:
                out.attributes.append(("crypto", answer_crypto(crypto).line()))
        for name in ("mid", "label"):
            value = m.attribute(name)
            if value is not None:
                out.attributes.append((name, value))
        answer.media.append(out)
        results.append(
            AnsweredMedia(
                index=index,
                accepted=usable,
                local_port=out.port,
                codec=codec,
                telephone_event=event,
                direction=direction,
                label=m.label,
                remote_address=m.connection,
                remote_port=m.port,
                crypto=crypto if usable else None,
            )
        )
    return Answer(answer, results)
