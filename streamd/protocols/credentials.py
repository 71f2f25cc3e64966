"""Bearer tokens (``server.tokens``): the token a request carries and whether it is a configured
one.

Pure functions of plain mappings (headers, query), so ``streamd.http`` and the ingest adapters
check tokens the same way without importing each other. Every configured token is compared in
constant time and without an early exit, so timing tells nothing about any of them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Mapping

CHALLENGE_HEADERS = {"WWW-Authenticate": 'Bearer realm="streamd"'}
"""Headers of a 401 answer (RFC 6750 §3)."""

UNAUTHORIZED_JSON = json.dumps(
    {"error": "unauthorized", "detail": "send Authorization: Bearer <token> or ?token="}
)
"""Body of a 401 answer: says how to authenticate, never which token was expected."""


def _header(headers: Mapping[str, str], name: str) -> str:
    """Header lookup that ignores case, for plain dicts as well as aiohttp's CIMultiDict."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), "")


def supplied_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """``Authorization: Bearer <token>``, else ``?token=`` (browsers cannot set headers on
    websockets)."""
    scheme, _, value = _header(headers, "Authorization").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("token")


def one_of(given: str | None, allowed: Collection[str]) -> bool:
    """True if ``given`` is non-empty and equal to one of ``allowed``, in constant time."""
    # surrogateescape: a header with bytes that are not UTF-8 is a wrong token (401), not a 500
    supplied = (given or "").encode("utf-8", "surrogateescape")
    ok = False
    for token in allowed:  # no early exit: the time does not depend on which token matched
        ok |= hmac.compare_digest(supplied, token.encode("utf-8", "surrogateescape"))
    return ok and bool(supplied)


def token_ok(headers: Mapping[str, str], query: Mapping[str, str], tokens: Collection[str]) -> bool:
    """True if no tokens are configured (open) or the request carries one of them."""
    return not tokens or one_of(supplied_token(headers, query), tokens)
