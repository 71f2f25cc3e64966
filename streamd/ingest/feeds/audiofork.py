"""FreeSWITCH mod_audio_fork ingest: websocket ``/v1/ingest/audiofork``, ``audio.drachtio.org``.

``uuid_audio_fork <uuid> start ws://HOST:8080/v1/ingest/audiofork?token=T mono 16k '{...}'``
connects, sends the JSON metadata as the first text frame, then raw L16 frames. The mix and rate
are not on the wire: they come from the metadata (``mixType``, ``sampleRate``) when the dialplan
puts them there, else from ``sources.audiofork.mix`` and ``sample_rate``. mod_audio_fork cannot
set headers, so ``server.tokens`` are passed as ``?token=`` in the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamd.ingest.feeds.connection import FeedLimits
from streamd.ingest.feeds.websocket import WebSocketFeed
from streamd.protocols.feeds.audiofork import SUBPROTOCOL, AudioForkSession

if TYPE_CHECKING:
    from aiohttp import web

    from streamd.config import Config


class AudioForkSource(WebSocketFeed):
    name = "audiofork"
    protocols = (SUBPROTOCOL,)

    def __init__(
        self,
        path: str = "/v1/ingest/audiofork",
        limits: FeedLimits | None = None,
        tokens: list[str] | None = None,
        sample_rate: int = 8000,
        mix: str = "mono",
    ) -> None:
        super().__init__(path, limits or FeedLimits(), tokens)
        self.sample_rate = sample_rate
        self.mix = mix

    @classmethod
    def from_config(cls, config: Config) -> AudioForkSource:
        f = config.sources.audiofork
        return cls(f.path, FeedLimits.of(f), config.server.tokens, f.sample_rate, f.mix)

    def new_session(self, request: web.Request) -> AudioForkSession:
        size = self.limits.max_message_bytes
        return AudioForkSession(
            sample_rate=self.sample_rate, mix=self.mix, max_text_bytes=size, max_frame_bytes=size
        )

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "path": self.path,
            "sample_rate": self.sample_rate,
            "mix": self.mix,
        }
