"""What every source looks like to the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from streamd.pipeline.hub import StreamHub


class Source:
    """A transport that opens streams on the hub. Subclasses override what they need.

    ``setup_http`` lets websocket/HTTP sources add routes to the daemon's one aiohttp app before
    it starts; ``start`` binds sockets; ``stop`` stops taking new streams and closes open ones.
    """

    name = "source"

    def setup_http(self, app: web.Application) -> None:
        return None

    async def start(self, hub: StreamHub) -> None:
        self.hub = hub

    async def stop(self) -> None:
        return None

    @property
    def done(self) -> bool:
        """True when the source will open no more streams (files played out)."""
        return False

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "up": True}

    def metric_counters(self) -> dict[str, float]:
        """Flat numeric counters for ``/metrics`` (``streamd_source_counter{source,name}``)."""
        return {
            k: v
            for k, v in self.status().items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
