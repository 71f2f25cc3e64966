"""SIP header values: the header multi-map, Via, name-addr (From/To/Contact) and parameters.

Kept apart from :mod:`streamd.protocols.sip.message` (message framing) so each stays short. Header
names are canonicalised once, on the way in, so every lookup is a plain case-insensitive match
and compact forms (RFC 3261 §7.3.3 and later RFCs) never leak into the rest of the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from streamd.errors import ProtocolError


class SipError(ProtocolError):
    """A SIP message (or stream) that does not follow RFC 3261."""


class SipHeaderError(SipError):
    """A header value that does not follow its grammar."""


COMPACT_FORMS = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip

_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authorization",
    "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
    "Expires", "From", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Organization", "P-Asserted-Identity", "Priority", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "Record-Route", "Recv-Info", "Reply-To",
    "Require", "Retry-After", "Route", "RSeq", "RAck", "Server", "Session-Expires", "Subject",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate", *COMPACT_FORMS.values(),
]  # fmt: skip
_CANONICAL = {name.lower(): name for name in _KNOWN}
_CANONICAL.update({short: long for short, long in COMPACT_FORMS.items()})

#: Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1), so several values may
#: share one line. Others (From, To, Call-ID, CSeq, WWW-Authenticate...) are never split.
LIST_HEADERS = frozenset(
    [
        "accept", "accept-encoding", "accept-language", "alert-info", "allow", "allow-events",
        "call-info", "contact", "content-encoding", "content-language", "error-info",
        "history-info", "in-reply-to", "p-asserted-identity", "path", "proxy-require", "reason",
        "record-route", "require", "route", "service-route", "supported", "unsupported", "via",
        "warning",
    ]
)  # fmt: skip

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S")
_VIA = re.compile(rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({_TOKEN})[ \t]+([^;, \t]+)[ \t]*(;.*)?")
_CONTENT_TYPE = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})[ \t]*(;.*)?")


def canonical_name(name: str) -> str:
    """``v`` -> ``Via``, ``call-id`` -> ``Call-ID``; unknown names keep their spelling."""
    return _CANONICAL.get(name.lower(), name)


def split_list(value: str) -> list[str]:
    """Split at commas that are outside quoted strings and ``<...>`` (empty items dropped)."""
    items, _ = _split_outside(value, ",", angle=True)
    return [item.strip() for item in items if item.strip()]


def _split_outside(text: str, sep: str, *, angle: bool) -> tuple[list[str], bool]:
    """The one quote-aware splitter: ``text`` split at ``sep`` outside quoted strings (with
    backslash escapes) and, with ``angle``, outside ``<...>``; items as written, and whether a
    quote was left open (the caller decides if that is an error)."""
    items: list[str] = []
    current: list[str] = []
    quoted = inside = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif angle and not quoted and char in "<>":
            inside = char == "<"
        elif char == sep and not quoted and not inside:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items, quoted


class Headers:
    """Ordered multi-map of headers; names compare case-insensitively, compact forms expanded."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def get(self, name: str) -> str | None:
        """The first value (first list element for list headers), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value in order; comma-separated list headers are split into elements."""
        key = canonical_name(name).lower()
        values = [value for n, value in self._items if n.lower() == key]
        if key in LIST_HEADERS:
            return [item for value in values for item in split_list(value)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one, where the first one was (or at the end)."""
        key = canonical_name(name).lower()
        index = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), None)
        self.remove(name)
        item = (canonical_name(name), value)
        self._items.insert(len(self._items) if index is None else index, item)

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


MAX_PARAMS = 64  # parameters on one header value
MAX_PARAM_CHARS = 1024  # one parameter, name and value


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x;y"`` -> ``{"a": "1", "b": None, "c": "x;y"}`` (names lower-cased).
    At most ``MAX_PARAMS`` of at most ``MAX_PARAM_CHARS`` each: more is a malformed header."""
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if text.count(";") > MAX_PARAMS:
        raise SipHeaderError(f"more than {MAX_PARAMS} parameters")
    if not text.startswith(";"):
        raise SipHeaderError(f"parameters must start with ';': {text[:40]!r}")
    items, unterminated = _split_outside(text[1:], ";", angle=False)
    if unterminated:
        raise SipHeaderError("unterminated quoted string")
    for item in items:
        if len(item) > MAX_PARAM_CHARS:
            raise SipHeaderError(f"parameter longer than {MAX_PARAM_CHARS}: {item[:40]!r}")
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not re.fullmatch(_TOKEN, name):
            raise SipHeaderError(f"malformed parameter {item[:40]!r}")
        value = value.strip()
        if value.startswith('"'):
            value = _unquote(value)
        params[name] = value if sep else None
    return params


def _unquote(text: str) -> str:
    if len(text) < 2 or not text.endswith('"'):
        raise SipHeaderError(f"malformed quoted string {text[:40]!r}")
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _check_params(text: str) -> str:
    """Reject characters no parameter may hold, so junk fails here, not later."""
    if "<" in text or ">" in text:
        raise SipHeaderError(f"unexpected bracket in {text[:40]!r}")
    return text


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To or Contact: ``"Display" <uri>;params``."""

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(value: str) -> NameAddr:
    text = value.strip()
    display: str | None = None
    if text.startswith('"'):
        end = 1
        while end < len(text) and text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            raise SipHeaderError("unterminated display name")
        display = _unquote(text[: end + 1])
        text = text[end + 1 :].lstrip()
        if not text.startswith("<"):
            raise SipHeaderError("quoted display name without <uri>")
    if "<" in text:
        lt = text.index("<")
        gt = text.find(">", lt)
        if gt < 0:
            raise SipHeaderError("'<' without '>'")
        display = display or text[:lt].strip() or None
        uri, rest = text[lt + 1 : gt].strip(), text[gt + 1 :]
    else:
        uri, sep, rest = text.partition(";")
        uri, rest = uri.strip(), sep + rest
    if not _SCHEME.match(uri):
        raise SipHeaderError(f"not a URI: {uri[:40]!r}")
    return NameAddr(uri, display, parse_params(_check_params(rest)))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def to_value(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        sent_by = host if self.port is None else f"{host}:{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {sent_by}{params}"

    def with_received(self, source_ip: str, source_port: int) -> Via:
        """RFC 3261 §18.2.1 and RFC 3581: record where the request really came from."""
        params = dict(self.params)
        if source_ip != self.host:
            params["received"] = source_ip
        if "rport" in params:
            params["rport"] = str(source_port)
        return Via(self.transport, self.host, self.port, params)

    def response_target(self, source_ip: str, source_port: int) -> tuple[str, int]:
        """Where a response to this (UDP) request goes: the source address, and the source
        port only when the client asked with ``rport`` (RFC 3581), else the sent-by port."""
        if "rport" in self.params:
            return source_ip, source_port
        return source_ip, self.port or 5060


def parse_via(value: str) -> Via:
    match = _VIA.fullmatch(value.strip())
    if match is None:
        raise SipHeaderError(f"malformed Via {value[:60]!r}")
    transport, sent_by, params = match.groups()
    port: str | None = None
    if sent_by.startswith("["):
        host, sep, rest = sent_by[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise SipHeaderError(f"malformed Via host {sent_by[:60]!r}")
        port = rest[1:] if rest else None
    elif sent_by.count(":") == 1:
        host, port = sent_by.split(":")
    elif ":" in sent_by:
        raise SipHeaderError(f"IPv6 Via host without brackets {sent_by[:60]!r}")
    else:
        host = sent_by
    if not host or (port is not None and not re.fullmatch(r"[0-9]{1,5}", port)):
        raise SipHeaderError(f"malformed Via sent-by {sent_by[:60]!r}")
    if port is not None and not 0 < int(port) < 65536:
        raise SipHeaderError(f"Via port out of range {sent_by[:60]!r}")
    return Via(transport.upper(), host, int(port) if port else None, parse_params(params or ""))


def parse_content_type(value: str) -> tuple[str, dict[str, str | None]]:
    """``multipart/mixed;boundary=x`` -> ``("multipart/mixed", {"boundary": "x"})``."""
    match = _CONTENT_TYPE.fullmatch(value)
    if match is None:
        raise SipHeaderError(f"malformed Content-Type {value[:60]!r}")
    return match.group(1).lower(), parse_params(match.group(2) or "")
