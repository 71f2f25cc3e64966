"""``/healthz`` (the process answers) and ``/readyz`` (it can take and score calls).

Kept apart because they answer different questions: a load balancer or orchestrator should stop
sending calls to a daemon that is shutting down or lost a source (``/readyz`` 503), but should not
restart it for that (``/healthz`` stays 200 while the event loop runs).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streamd import __version__

if TYPE_CHECKING:
    from streamd.app.daemon import Daemon

STARTED = time.monotonic()


def readiness(daemon: Daemon) -> tuple[bool, dict[str, Any]]:
    info = daemon.describe()
    sources = info.get("sources") or []
    reasons = []
    if daemon.detector is None:
        reasons.append("model not loaded")
    if not daemon.ready:
        reasons.append("starting" if daemon.detector is None or daemon.hub is None else "not ready")
    if daemon.stopping or (daemon.hub is not None and not daemon.hub.accepting):
        reasons.append("shutting down")
    down = [s.get("name") for s in sources if not s.get("up", False)]
    if down:
        reasons.append(f"sources down: {down}")
    unavailable = getattr(daemon.detector, "unavailable", None)  # the Triton tier (model/remote.py)
    if callable(unavailable) and (why := unavailable()):
        reasons.append(why)
    ok = not reasons
    info.update(ready=ok, reasons=reasons, last_event_id=daemon.bus.last_id if daemon.bus else None)
    scorer_status = getattr(daemon.scorer, "status", None)
    if callable(scorer_status):
        info["inference"] = scorer_status()
    if daemon.outbox is not None:
        # Shown, never a reason: calls keep flowing while NATS is down; events wait in the outbox.
        info["sinks"] = {"nats": daemon.outbox.status()}
    return ok, info


def setup_health(app: web.Application, daemon: Daemon) -> None:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - STARTED, 1),
            }
        )

    async def readyz(request: web.Request) -> web.Response:
        ok, body = readiness(daemon)
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
