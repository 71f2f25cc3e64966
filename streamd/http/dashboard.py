"""``GET /``: the live dashboard, plain static files shipped in the package (no build step).

The page reads ``/v1/events`` like any other subscriber. It needs a few facts the events do not
carry on every window (the alert thresholds, the model, whether WebRTC ingest is on), so
``GET /v1/dashboard/info`` gives them, under the same token rule as the events, with a snapshot of
every open stream: the page draws those at once, even calls that started before the replay it asks
for, then fills in their timelines from the replay and live events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from streamd import __version__
from streamd.http.alerts import AlertIndex, setup_alerts
from streamd.http.auth import require_token
from streamd.http.view import HttpView, HubView

STATIC = Path(__file__).resolve().parent / "static"
INFO_PATH = "/v1/dashboard/info"
NO_CACHE = {"Cache-Control": "no-cache"}  # a daemon upgrade must not leave an old app.js in use
REPLAY_EVENTS = 5000  # how far back the page replays on first load for timelines and history


def open_streams(hub: HubView, alerts: AlertIndex | None) -> list[dict[str, Any]]:
    """Where every open stream stands now, for the page's first paint."""
    out = []
    for stream in list(hub.streams.values()):
        sid = stream.info.stream_id
        out.append(
            {
                "stream": stream.stream_json,
                "started": stream.started_at,
                "windows": stream.windows,
                "score": round(stream.scores[-1], 6) if stream.scores else None,
                "smoothed": None
                if stream.smoother.score is None
                else round(stream.smoother.score, 6),
                "alerting": stream.smoother.alerting,
                "alert_id": alerts.latest.get(sid) if alerts is not None else None,
            }
        )
    return out


def dashboard_info(view: HttpView | None, alerts: AlertIndex | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "version": __version__,
        "thresholds": None,
        "model": None,
        "provider": None,
        "webrtc": None,
        "last_event_id": 0,
        "replay_events": REPLAY_EVENTS,
        "streams": [],
    }
    if view is None:
        return info
    info["streams"] = open_streams(view.hub, alerts)
    raise_, clear = view.hub.thresholds
    info["thresholds"] = {"raise": raise_, "clear": clear}
    info["model"] = view.hub.model_json
    info["provider"] = view.model.provider
    info["last_event_id"] = view.bus.last_id
    for source in view.sources:
        if source.name == "webrtc":
            status = source.status()
            # the browser can use STUN URLs; TURN needs credentials the page does not hold
            stun = [
                s.urls for s in getattr(source, "ice_servers", []) if str(s.urls).startswith("stun")
            ]
            info["webrtc"] = {
                "peers": status.get("peers"),
                "max_peers": status.get("max_peers"),
                "ice_servers": stun,
            }
    return info


def setup_dashboard(app: web.Application, view: HttpView | None = None) -> None:
    tokens = list(view.server.tokens) if view is not None else []
    alerts = setup_alerts(app, view.bus, view.store, tokens) if view is not None else None

    async def index(request: web.Request) -> web.FileResponse:
        # The page itself is not secret; it asks for the token (from ?token=) on every API call.
        return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)

    async def info(request: web.Request) -> web.Response:
        require_token(request, tokens)
        return web.json_response(dashboard_info(view, alerts), headers=NO_CACHE)

    app.router.add_get("/", index)
    app.router.add_get(INFO_PATH, info)
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
