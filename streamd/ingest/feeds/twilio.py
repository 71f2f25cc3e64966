"""Twilio Media Streams ingest: ``<Start><Stream url="wss://HOST/v1/ingest/twilio"/></Start>``.

Each websocket is one Twilio ``<Stream>``; each of its tracks is one stream (``inbound`` is the
caller, ``outbound`` the agent or bot) with ``callSid``, ``streamSid``, ``accountSid`` and the
``<Parameter>`` values in ``labels``. Parsing, reordering and gaps live in
``streamd.protocols.feeds.twilio``; the socket loop in ``streamd.ingest.feeds.websocket``.

Auth: with ``auth_token`` set, the upgrade must carry a valid ``X-Twilio-Signature`` (Twilio
signs the ``wss://`` URL from the TwiML; behind a proxy that rewrites the host, set
``public_url`` to that URL). Without it, ``server.tokens`` apply as on every other endpoint;
Twilio cannot send a bearer header, so a token then has to be added by a proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamd.ingest.feeds.connection import FeedLimits
from streamd.ingest.feeds.websocket import WebSocketFeed
from streamd.protocols.feeds.twilio import TwilioSession, validate_signature

if TYPE_CHECKING:
    from aiohttp import web

    from streamd.config import Config


class TwilioSource(WebSocketFeed):
    name = "twilio"

    def __init__(
        self,
        path: str = "/v1/ingest/twilio",
        limits: FeedLimits | None = None,
        tokens: list[str] | None = None,
        auth_token: str | None = None,
        public_url: str | None = None,
        reorder_window: int = 5,
    ) -> None:
        super().__init__(path, limits or FeedLimits(), tokens)
        self.auth_token = auth_token or None
        self.public_url = public_url or None
        self.reorder_window = reorder_window

    @classmethod
    def from_config(cls, config: Config) -> TwilioSource:
        t = config.sources.twilio
        return cls(
            t.path,
            FeedLimits.of(t),
            config.server.tokens,
            t.auth_token,
            t.public_url,
            t.reorder_window,
        )

    def authorize(self, request: web.Request) -> str | None:
        if self.auth_token is None:
            return super().authorize(request)
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            return "missing X-Twilio-Signature (sources.twilio.auth_token is set)"
        for url in self.signed_urls(request):
            if validate_signature(self.auth_token, url, None, signature):
                return None
        hint = "" if self.public_url else "; behind a proxy, set sources.twilio.public_url"
        return f"X-Twilio-Signature does not match {self.signed_urls(request)[0]!r}{hint}"

    def signed_urls(self, request: web.Request) -> list[str]:
        """The URLs Twilio may have signed: ``public_url``, else this request's own ``wss://`` URL.

        A websocket upgrade is a GET, so the signature covers the URL alone, query included.
        """
        if self.public_url is not None:
            url = self.public_url
            if request.query_string and "?" not in url:
                url += "?" + request.query_string
            return [url]
        return [f"{scheme}://{request.host}{request.raw_path}" for scheme in ("wss", "https")]

    def new_session(self, request: web.Request) -> TwilioSession:
        return TwilioSession(
            reorder_window=self.reorder_window,
            max_message_bytes=self.limits.max_message_bytes,
            max_gap_s=self.limits.max_gap_s,
        )

    def status(self) -> dict[str, Any]:
        return {**super().status(), "path": self.path, "signature": self.auth_token is not None}
