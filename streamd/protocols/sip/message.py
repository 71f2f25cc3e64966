"""SIP message parsing and building (RFC 3261 §7, §18, §20), sans-I/O.

The UAS adapter reads datagrams (or TCP bytes through :class:`SipStreamFramer`), calls
:func:`parse_message`, and answers with :func:`build_response`. Only the headers a UAS needs
are interpreted (Via, From/To tags, Call-ID, CSeq, Content-*); everything else is kept verbatim
so it can be logged or copied. All failures are :class:`SipError`, which the adapter answers
with 400 (or drops, for a response) without touching any other call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from streamd.protocols.sip.headers import (
    COMPACT_FORMS,
    Headers,
    NameAddr,
    SipError,
    SipHeaderError,
    Via,
    parse_content_type,
    parse_name_addr,
    parse_via,
)

__all__ = [
    "COMPACT_FORMS",
    "MAX_MESSAGE_SIZE",
    "REASONS",
    "BodyPart",
    "Headers",
    "NameAddr",
    "SipError",
    "SipHeaderError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipStreamFramer",
    "Via",
    "build_response",
    "is_keepalive",
    "parse_message",
    "parse_multipart",
]

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 256
MAX_HEADER_LINE = 8192  # one header line (folded lines joined); longer is a 400, never parsed

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 513: "Message Too Large",
}  # fmt: skip

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^ ]+) (SIP/2\.0)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"(SIP/2\.0) ([1-6][0-9]{2}) ?(.*)", re.IGNORECASE)
_HEADER_LINE = re.compile(rf"({_TOKEN})[ \t]*:[ \t]*(.*)")
_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+({_TOKEN})[ \t]*")
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)\r?$", re.I | re.M)


@dataclass(slots=True)
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length always states the real body length."""
        self.headers.set("Content-Length", str(len(self.body)))
        lines = [self.start_line(), *(f"{name}: {value}" for name, value in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) from CSeq."""
        match = _CSEQ.fullmatch(self._required("CSeq"))
        if match is None or int(match.group(1)) >= 2**31:
            raise SipError("malformed CSeq")
        return int(match.group(1)), match.group(2)

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def vias(self) -> list[Via]:
        return [parse_via(value) for value in self.headers.get_all("Via")]

    @property
    def branch(self) -> str | None:
        """The top Via's branch: the transaction id (RFC 3261 §17.2.3)."""
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipError("no Via header")
        return parse_via(vias[0]).branch

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lower case (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        return None if value is None else parse_content_type(value)[0]

    def body_parts(self) -> list[BodyPart]:
        """The body as parts: one, or each part of a ``multipart/*`` body."""
        if not self.body:
            return []
        value = self.headers.get("Content-Type") or "application/octet-stream"
        mime, _ = parse_content_type(value)
        if mime.startswith("multipart/"):
            return parse_multipart(self.body, value)
        return [BodyPart(mime, Headers([("Content-Type", value)]), self.body)]

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipError(f"missing {name} header")
        return value


@dataclass(slots=True)
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = "sip:invalid"

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass(slots=True)
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


@dataclass(frozen=True, slots=True)
class BodyPart:
    content_type: str
    headers: Headers
    body: bytes


def _split_head(buf: bytes) -> tuple[bytes, bytes]:
    """Headers and body around the first empty line (CRLF or bare LF tolerated)."""
    match = re.search(rb"\r?\n\r?\n", buf)
    if match is None:
        return buf, b""
    return buf[: match.start()], buf[match.end() :]


def _parse_header_block(head: bytes, max_headers: int = MAX_HEADERS) -> tuple[str, Headers]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError("SIP headers are not UTF-8") from exc
    lines: list[str] = []
    for line in re.split(r"\r?\n", text):
        if line[:1] in (" ", "\t") and len(lines) > 1:
            lines[-1] += " " + line.strip()  # RFC 3261 §7.3.1 line folding
        else:
            lines.append(line)
    headers = Headers()
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise SipError(f"header line longer than {MAX_HEADER_LINE} characters: {line[:40]!r}")
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise SipError(f"malformed header line {line[:60]!r}")
        headers.add(match.group(1), match.group(2).strip())
        if len(headers) > max_headers:
            raise SipError(f"more than {max_headers} headers")
    return lines[0], headers


def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
    require_content_length: bool = False,
) -> SipRequest | SipResponse:
    """Parse one message (a UDP datagram, or one frame from :class:`SipStreamFramer`)."""
    buf = bytes(data)
    if len(buf) > max_size:
        raise SipError(f"SIP message larger than {max_size} bytes")
    buf = buf.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore empty lines before the start line
    if not buf:
        raise SipError("empty SIP message")
    head, body = _split_head(buf)
    start, headers = _parse_header_block(head)
    if len(start) > MAX_HEADER_LINE:
        raise SipError(f"start line longer than {MAX_HEADER_LINE} characters")
    message: SipRequest | SipResponse
    if (status := _STATUS_LINE.fullmatch(start)) is not None:
        message = SipResponse(headers, b"", int(status.group(2)), status.group(3))
    elif (request := _REQUEST_LINE.fullmatch(start)) is not None:
        message = SipRequest(headers, b"", request.group(1), request.group(2))
    else:
        raise SipError(f"malformed start line {start[:60]!r}")
    lengths = set(headers.get_all("Content-Length"))
    if len(lengths) > 1:
        raise SipError("conflicting Content-Length headers")
    if lengths:
        value = lengths.pop()
        if not re.fullmatch(r"[0-9]{1,10}", value):
            raise SipError(f"malformed Content-Length {value[:20]!r}")
        if int(value) > len(body):
            raise SipError("body shorter than Content-Length")
        body = body[: int(value)]  # RFC 3261 §18.3: a datagram's excess bytes are ignored
    elif require_content_length:
        raise SipError("Content-Length is required on stream transports")
    message.body = body
    return message


def is_keepalive(data: bytes | bytearray | memoryview) -> bool:
    """A NAT keep-alive datagram (CRLFs, or the odd NUL/space), to drop without counting as junk."""
    return bytes(data).strip(b"\r\n\x00 \t") == b""


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    source: tuple[str, int] | None = None,
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied; the
    To-tag added when ``to_tag`` is given and To has none; Record-Route copied for 1xx/2xx.
    ``source`` (the request's source address) stamps ``received``/``rport`` on the top Via."""
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not 100..699")
    out = Headers()
    vias = request.headers.get_all("Via")
    if not vias:
        raise SipError("request without Via")
    if source is not None:
        vias[0] = parse_via(vias[0]).with_received(*source).to_value()
    for value in vias:
        out.add("Via", value)
    out.add("From", request._required("From"))
    to = request._required("To")
    if to_tag is not None and parse_name_addr(to).tag is None:
        to = f"{to};tag={to_tag}"
    out.add("To", to)
    out.add("Call-ID", request.call_id)
    number, method = request.cseq
    out.add("CSeq", f"{number} {method}")
    if 100 < status < 300:
        for value in request.headers.get_all("Record-Route"):
            out.add("Record-Route", value)
    for name, value in headers:
        out.add(name, value)
    if body:
        out.add("Content-Type", content_type or "application/sdp")
    return SipResponse(out, body, status, reason or REASONS.get(status, "Unknown"))


def parse_multipart(body: bytes, content_type: str) -> list[BodyPart]:
    """Split a ``multipart/*`` body (RFC 2046 §5.1) into its parts."""
    mime, params = parse_content_type(content_type)
    boundary = params.get("boundary")
    if not mime.startswith("multipart/") or not boundary or len(boundary) > 70:
        raise SipError(f"not a multipart type with a usable boundary: {content_type[:80]!r}")
    delimiter = re.compile(
        b"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8")) + b"(--)?[ \t]*(?:\r?\n|$)"
    )
    matches: Iterator[re.Match[bytes]] = delimiter.finditer(body)
    parts: list[BodyPart] = []
    previous: re.Match[bytes] | None = None
    for match in matches:
        if previous is not None:
            parts.append(_parse_part(body[previous.end() : match.start()]))
        if match.group(1):
            return parts
        previous = match
    raise SipError("multipart body without its closing delimiter")


def _parse_part(raw: bytes) -> BodyPart:
    if raw.startswith(b"\r\n") or raw.startswith(b"\n"):
        head, body = b"", raw[2 if raw.startswith(b"\r\n") else 1 :]
    else:
        head, body = _split_head(raw)
    _, headers = _parse_header_block(b"part\r\n" + head if head else b"part")
    value = headers.get("Content-Type") or "text/plain"
    return BodyPart(parse_content_type(value)[0], headers, body)


class SipStreamFramer:
    """Cuts a TCP/TLS byte stream into whole SIP messages using Content-Length (RFC 3261 §18.3).

    ``feed`` returns the complete messages as bytes, to hand to :func:`parse_message` (whose
    errors concern that message only). A framing error (no or bad Content-Length, a message
    over ``max_message_size``) leaves no way to find the next message: ``feed`` raises
    :class:`SipError` then and on every later call, and the adapter closes the connection.
    CRLF keep-alives (RFC 5626 §3.5.1) are skipped and counted in ``keepalives``.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self.keepalives = 0
        self._buffer = bytearray()
        self._broken: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._broken is not None:
            raise SipError(self._broken)
        self._buffer += data
        messages: list[bytes] = []
        while True:
            if self._buffer.startswith(b"\r\n\r\n"):
                self.keepalives += 1
                del self._buffer[:4]
                continue
            if self._buffer.startswith(b"\r\n") and len(self._buffer) >= 4:
                del self._buffer[:2]
                continue
            if self._buffer.startswith(b"\n"):
                del self._buffer[:1]
                continue
            frame = self._next_frame()
            if frame is None:
                return messages
            messages.append(frame)

    def _next_frame(self) -> bytes | None:
        match = re.search(rb"\r?\n\r?\n", self._buffer)
        if match is None:
            if len(self._buffer) > self.max_message_size:
                self._fail(f"SIP headers longer than {self.max_message_size} bytes")
            return None
        found = {v.strip() for v in _CONTENT_LENGTH.findall(bytes(self._buffer[: match.start()]))}
        if len(found) != 1:
            self._fail("stream message without one Content-Length")
        value = found.pop()
        if not re.fullmatch(rb"[0-9]{1,10}", value):
            self._fail("malformed Content-Length")
        total = match.end() + int(value)
        if total > self.max_message_size:
            self._fail(f"SIP message larger than {self.max_message_size} bytes")
        if len(self._buffer) < total:
            return None
        frame = bytes(self._buffer[:total])
        del self._buffer[:total]
        return frame

    def _fail(self, reason: str) -> None:
        self._broken = reason
        self._buffer.clear()
        raise SipError(reason)
