"""Bearer tokens for ``/v1/events`` and ``/metrics`` (``server.tokens``; empty means open).

Checked before any websocket upgrade, so an unauthenticated client never holds a connection.
Every configured token is compared in constant time, so timing tells nothing about any of them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from aiohttp import web


def supplied_token(request: web.Request) -> str | None:
    """``Authorization: Bearer <token>``, else ``?token=`` (browsers cannot set headers on websockets)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token")


def token_ok(request: web.Request, tokens: Sequence[str]) -> bool:
    if not tokens:
        return True
    given = (supplied_token(request) or "").encode()
    ok = False
    for token in tokens:  # no early exit: the time does not depend on which token matched
        ok |= hmac.compare_digest(given, token.encode())
    return ok and bool(given)


def require_token(request: web.Request, tokens: Sequence[str]) -> None:
    """Raise HTTP 401 unless the request carries one of ``tokens``."""
    if not token_ok(request, tokens):
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {"error": "unauthorized", "detail": "send Authorization: Bearer <token> or ?token="}
            ),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="streamd"'},
        )
