"""``/healthz`` (the process answers) and ``/readyz`` (it can take and score calls).

Kept apart because they answer different questions: a load balancer or orchestrator should stop
sending calls to a daemon that is shutting down or lost a source (``/readyz`` 503), but should not
restart it for that (``/healthz`` stays 200 while the event loop runs).
"""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

from streamd import __version__
from streamd.http.view import HttpView

STARTED = time.monotonic()


def readiness(view: HttpView) -> tuple[bool, dict[str, Any]]:
    """Ready, and the daemon's description with the reasons it is not (the model is loaded and
    the hub exists before the server starts, so those are never among them)."""
    state = view.state
    info = state.describe()
    sources = info.get("sources") or []
    reasons = []
    if not state.ready:
        reasons.append("not ready")
    if state.stopping or not view.hub.accepting:
        reasons.append("shutting down")
    down = [s.get("name") for s in sources if not s.get("up", False)]
    if down:
        reasons.append(f"sources down: {down}")
    if view.model_unavailable is not None and (why := view.model_unavailable()):
        reasons.append(why)  # the Triton tier (model/remote.py) is down
    ok = not reasons
    info.update(ready=ok, reasons=reasons, last_event_id=view.bus.last_id)
    scorer_status = getattr(view.scorer, "status", None)  # a scorer in front of a Triton tier
    if callable(scorer_status):
        info["inference"] = scorer_status()
    if view.outbox is not None:
        # Shown, never a reason: calls keep flowing while NATS is down; events wait in the outbox.
        info["sinks"] = {"nats": view.outbox.status()}
    return ok, info


def setup_health(app: web.Application, view: HttpView) -> None:
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
        ok, body = readiness(view)
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
