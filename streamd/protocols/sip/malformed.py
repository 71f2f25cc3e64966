"""Screening what arrives before it is parsed, and answering what failed to parse.

A flood of random datagrams must stay cheap (:func:`looks_like_sip` checks one start line), and
a request that breaks the grammar still deserves a 400 that says why when the sender is one we
talk to (:func:`salvage` rebuilds it from its good header lines).
"""

from __future__ import annotations

import re

from streamd.protocols.sip.message import SipError, SipRequest, build_response, parse_message

_HEADER = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+[ \t]*:.*")
_START = re.compile(
    rb"[\r\n]*(?:SIP/2\.0 [1-6][0-9][0-9]|[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,31} [^ \r\n]+ SIP/2\.0\r?\n)",  # noqa: E501
    re.I,
)


def looks_like_sip(data: bytes) -> bool:
    """A start line (RFC 3261 §7.1/§7.2) at the start: the one check worth making on junk."""
    return _START.match(data, 0, 512) is not None


def phrase(text: str, limit: int = 120) -> str:
    """A reason phrase from an error message: printable ASCII only (never a CR or LF)."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def salvage(data: bytes) -> SipRequest | None:
    """A request that failed to parse, rebuilt from its well-formed header lines (body dropped),
    so it can be answered with 400 and the reason; None when not even that works."""
    if not looks_like_sip(data) or data.lstrip(b"\r\n").startswith(b"SIP/"):
        return None
    head = re.split(rb"\r?\n\r?\n", data.lstrip(b"\r\n"), maxsplit=1)[0]
    lines = head.decode("utf-8", "replace").splitlines()
    if not lines:
        return None
    keep = [lines[0]] + [
        line
        for line in lines[1:]
        if _HEADER.fullmatch(line)
        and line.split(":", 1)[0].strip().lower() not in ("content-length", "l")
    ]
    try:
        message = parse_message(("\r\n".join(keep) + "\r\n\r\n").encode())
        if not isinstance(message, SipRequest) or message.method.upper() == "ACK":
            return None
        build_response(message, 400)  # raises when Via, From, To, Call-ID or CSeq are unusable
    except (SipError, ValueError):
        return None
    return message
