"""Bearer tokens for ``/v1/events``, ``/metrics`` and the dashboard (``server.tokens``; empty:
open).

Checked before any websocket upgrade, so an unauthenticated client never holds a connection.
The check itself is :mod:`streamd.protocols.credentials`, shared with the ingest adapters.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from streamd.protocols.credentials import CHALLENGE_HEADERS, UNAUTHORIZED_JSON, token_ok


def require_token(request: web.Request, tokens: Collection[str]) -> None:
    """Raise HTTP 401 unless the request carries one of ``tokens`` (or none are configured)."""
    if not token_ok(request.headers, request.query, tokens):
        raise web.HTTPUnauthorized(
            text=UNAUTHORIZED_JSON, content_type="application/json", headers=CHALLENGE_HEADERS
        )
