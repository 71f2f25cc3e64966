"""The daemon's one aiohttp server: events websocket, health, metrics, and the HTTP sources'
routes."""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from streamd.errors import StreamdError
from streamd.http.dashboard import setup_dashboard
from streamd.http.events_ws import EventsEndpoint
from streamd.http.guard import ConnectionGuard, GuardedRunner
from streamd.http.health import setup_health
from streamd.http.metrics import DaemonMetrics, setup_metrics
from streamd.http.view import HttpView

log = logging.getLogger("streamd.http")

CLIENT_FLUSH_S = 2.0  # on stop: time for websocket clients to take their last events
GUARD = web.AppKey("guard", ConnectionGuard)


class ServerHandle:
    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        events: EventsEndpoint,
        metrics: DaemonMetrics,
    ) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.events = events
        self.metrics = metrics

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.events.shutdown(CLIENT_FLUSH_S)
        await self.runner.cleanup()
        log.info("server on %s stopped", self.url)


def build_app(view: HttpView) -> tuple[web.Application, EventsEndpoint, DaemonMetrics]:
    cfg = view.server
    guard = ConnectionGuard(cfg.max_connections, cfg.header_timeout_s)
    app = web.Application(client_max_size=1024 * 1024, middlewares=[guard.middleware])
    app[GUARD] = guard
    events = EventsEndpoint(view.bus, view.store, cfg.tokens, cfg.client_queue, cfg.allowed_origins)
    app.router.add_get("/v1/events", events.handle)
    metrics = DaemonMetrics(view, events)
    setup_metrics(app, metrics, cfg.tokens)
    setup_health(app, view)
    setup_dashboard(app, view)  # GET /, static files, /v1/dashboard/info (issue 7)
    for source in view.sources:
        source.setup_http(app)
    return app, events, metrics


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def start_server(view: HttpView) -> ServerHandle:
    """Bind ``server.host:server.port`` (0 picks a free port) and log the address it got."""
    cfg = view.server
    if not cfg.tokens and not _is_loopback(cfg.host):
        log.warning(
            "server.host is %s and server.tokens is empty: anyone who can reach it can read "
            "every event and /metrics; set server.tokens",
            cfg.host,
        )
    app, events, metrics = build_app(view)
    runner = GuardedRunner(app, app[GUARD], handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, shutdown_timeout=CLIENT_FLUSH_S)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StreamdError(
            "server.host/server.port: cannot listen on "
            f"{cfg.host}:{cfg.port} ({exc.strerror or exc})"
        ) from None
    port = int(runner.addresses[0][1]) if runner.addresses else cfg.port
    handle = ServerHandle(runner, cfg.host, port, events, metrics)
    log.info(
        "listening on %s (events: %s/v1/events, auth: %s)",
        handle.url,
        handle.url,
        "bearer token" if cfg.tokens else "none",
    )
    return handle
