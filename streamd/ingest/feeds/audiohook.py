"""Genesys Cloud AudioHook Monitor ingest: websocket ``/v1/ingest/audiohook`` (protocol v2).

One websocket is one AudioHook session: the ``open`` transaction picks PCMU or L16 at 8 kHz and
each negotiated channel becomes a stream (``external`` = customer = leg ``caller``, ``internal``
= agent = leg ``agent``), labelled with ``conversationId``, participant ``ani``/``dnis`` and the
session ids. Replies (``opened``, ``pong``, ``closed``, ``disconnect``) go back on the socket;
the protocol itself lives in ``streamd.protocols.feeds.audiohook``.

Auth happens before the upgrade, answered 401 as Genesys expects: ``X-API-KEY`` must be one of
``api_keys`` (or of ``server.tokens`` when no keys are configured) and the
``Audiohook-Organization-Id`` in ``organization_ids`` when that list is set. Genesys also signs
requests with the integration's client secret (HTTP message signatures, RFC 9421): for a key in
``client_secrets`` the signature must be valid and fresh (``protocols/feeds/signature.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from streamd.ingest.feeds.connection import FeedLimits
from streamd.ingest.feeds.websocket import WebSocketFeed
from streamd.protocols.feeds.audiohook import AudioHookSession, check_auth
from streamd.protocols.feeds.signature import decode_secret, verify

if TYPE_CHECKING:
    from aiohttp import web

    from streamd.config import Config


class AudioHookSource(WebSocketFeed):
    name = "audiohook"

    def __init__(
        self,
        path: str = "/v1/ingest/audiohook",
        limits: FeedLimits | None = None,
        api_keys: list[str] | None = None,
        organization_ids: list[str] | None = None,
        client_secrets: dict[str, str] | None = None,
    ) -> None:
        super().__init__(path, limits or FeedLimits())
        self.api_keys = list(api_keys or [])
        self.organization_ids = list(organization_ids or [])
        self.secrets = {k: decode_secret(v) for k, v in (client_secrets or {}).items()}
        self.bad_signatures = 0

    @classmethod
    def from_config(cls, config: Config) -> AudioHookSource:
        a = config.sources.audiohook
        keys = a.api_keys or config.server.tokens
        return cls(a.path, FeedLimits.of(a), keys, a.organization_ids, a.client_secrets)

    def authorize(self, request: web.Request) -> str | None:
        why = check_auth(
            request.headers, api_keys=self.api_keys, allowed_orgs=self.organization_ids
        )
        key = request.headers.get("X-API-KEY", "").strip()
        if why is None and key in self.secrets:
            verdict = verify(request.headers, request.raw_path, self.secrets, time.time())
            if not verdict.ok:
                self.bad_signatures += 1
                return f"HTTP message signature: {verdict.reason}"
        return why

    def new_session(self, request: web.Request) -> AudioHookSession:
        size = self.limits.max_message_bytes
        return AudioHookSession(
            headers=dict(request.headers),
            allowed_orgs=self.organization_ids,
            max_text_bytes=size,
            max_binary_bytes=size,
        )

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "path": self.path,
            "api_keys": len(self.api_keys),
            "organizations": len(self.organization_ids),
            "signed_keys": len(self.secrets),
            "bad_signatures": self.bad_signatures,
        }
