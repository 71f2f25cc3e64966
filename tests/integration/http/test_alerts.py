"""``POST /v1/alerts/{id}/acknowledge`` and the console's open-stream snapshot, on a real daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from streamd.events.schema import validate_event
from streamd.pipeline.audio import StreamInfo

from tests.helpers.webrtc import daemon_config, running_daemon, server_url

TOKEN = "ack-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers or {}) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_acknowledge_is_an_event_stored_and_replayed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db", server={"tokens": [TOKEN]})
    async with running_daemon(cfg) as daemon:
        assert daemon.bus is not None and daemon.store is not None
        stream = StreamInfo.new(source="sip", leg="caller", call_id="c7").to_json()
        raised = daemon.bus.publish(
            "alert.raised",
            stream,
            score=0.95,
            smoothed=0.8,
            window={"start_s": 0.0, "end_s": 4.0},
            model={"name": "tiny"},
        )
        await daemon.bus.drain()  # stored and sent, as an alert a supervisor saw is
        url = f"{server_url(daemon)}/v1/alerts/{raised['id']}/acknowledge"
        ok = json.dumps({"by": "Dana", "note": "called back, real customer"})
        assert (await post(url, ok))[0] == 401  # same tokens as /v1/events
        assert (await post(url, "not json", AUTH))[0] == 400
        status, body = await post(url, json.dumps({"note": "x"}), AUTH)
        assert status == 400 and "by" in body["detail"]
        assert (await post(url, json.dumps({"by": "x" * 101}), AUTH))[0] == 400
        missing = f"{server_url(daemon)}/v1/alerts/{raised['id'] + 99}/acknowledge"
        assert (await post(missing, ok, AUTH))[0] == 404
        status, event = await post(url, ok, AUTH)
        assert status == 200, event
        validate_event(event)
        assert event["type"] == "alert.acknowledged" and event["alert_id"] == raised["id"]
        assert event["by"] == "Dana" and event["stream"] == stream
        status, body = await post(url, json.dumps({"by": "Sam"}), AUTH)
        assert status == 409 and "Dana" in body["detail"] and body["event"]["id"] == event["id"]
        await daemon.bus.drain()
        stored = daemon.store.read_since(0, types=["alert.acknowledged"])
        assert [e["id"] for e in stored] == [event["id"]]

    # a restarted daemon finds the alert in the store, not in memory
    async with running_daemon(cfg) as daemon:
        status, again = await post(
            f"{server_url(daemon)}/v1/alerts/{raised['id']}/acknowledge",
            json.dumps({"by": "Sam"}),
            AUTH,
        )
        assert status == 200 and again["stream"] == stream and again["by"] == "Sam"


async def test_info_lists_open_streams_for_the_first_paint(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db")
    async with running_daemon(cfg) as daemon:
        assert daemon.hub is not None
        info = StreamInfo.new(source="sip", leg="caller", labels={"from": "sip:+1555@x"})
        stream = daemon.hub.open_stream(info, 8000)
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{server_url(daemon)}/v1/dashboard/info") as r,
        ):
            body = await r.json()
        [snap] = body["streams"]
        assert snap["stream"] == info.to_json() and snap["windows"] == 0
        assert snap["alerting"] is False and snap["alert_id"] is None
        assert body["last_event_id"] >= 1 and body["replay_events"] > 0
        await stream.close("test")
