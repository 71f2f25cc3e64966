"""The dashboard: its HTTP routes, and a real headless Chromium streaming a WAV "microphone" to it.

The browser test runs ``tests/e2e/dashboard.spec.mjs`` (playwright-core driving Debian's
``/usr/bin/chromium``; ``scripts/setup --dev`` runs ``npm ci`` there). It saves the screenshot
to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.helpers.common import write_wav
from tests.helpers.webrtc import EventsClient, daemon_config, running_daemon, server_url

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"
ARTIFACTS = ROOT / "artifacts"
TOKEN = "dash-token"
CHROMIUM = Path("/usr/bin/chromium")


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_routes_serve_the_page_static_files_and_info(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(
        tiny_model_dir,
        tmp_path / "e.db",
        server={"tokens": [TOKEN]},
        alerts={"raise": 0.7, "clear": 0.55},
    )
    async with running_daemon(cfg) as daemon:
        url = server_url(daemon)
        status, ctype, html = await fetch(url + "/")
        assert status == 200 and ctype.startswith("text/html")
        assert "Test my microphone" in html and "/static/app.js" in html
        for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
            status, ctype, _ = await fetch(f"{url}/static/{name}")
            assert status == 200 and kind in ctype, (name, ctype)
        assert (await fetch(url + "/v1/dashboard/info"))[0] == 401
        status, _, body = await fetch(f"{url}/v1/dashboard/info?token={TOKEN}")
        info = json.loads(body)
        assert status == 200
        assert info["thresholds"] == {"raise": 0.7, "clear": 0.55}
        assert info["model"]["name"] == "tiny" and info["webrtc"]["max_peers"] == 20


def test_static_files_ship_in_the_package() -> None:
    from importlib.resources import files

    static = files("streamd.http") / "static"
    for name in ("index.html", "app.js", "style.css"):
        assert (static / name).is_file(), name


def browser_available() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (Debian: apt install nodejs npm)"
    if not CHROMIUM.exists():
        return "Debian chromium is not installed (apt install chromium)"
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: run scripts/setup --dev (npm ci in tests/e2e)"
    return None


async def run_spec(
    url: str, wav: Path, screenshot: Path, runs: int = 1, timeout_s: float = 150
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(E2E / "dashboard.spec.mjs"),
        "--url",
        url,
        "--wav",
        str(wav),
        "--screenshot",
        str(screenshot),
        "--runs",
        str(runs),
        "--timeout-s",
        "45",
        cwd=E2E,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the browser test did not finish in time") from None
    lines = out.decode().strip().splitlines()
    assert lines, (
        f"no result from the browser test (exit {proc.returncode}): {err.decode()[-2000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and result["ok"], json.dumps(result, indent=1)[-4000:]
    return result


async def test_browser_mic_stream_shows_on_the_dashboard(
    tiny_model_dir: Path, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    wav = write_wav(tmp_path / "mic.wav", speech_16k[: 20 * 16000], 16000)
    screenshot = ARTIFACTS / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db", server={"tokens": [TOKEN]})
    async with running_daemon(cfg) as daemon, EventsClient(server_url(daemon), TOKEN) as events:
        result = await run_spec(f"{server_url(daemon)}/?token={TOKEN}", wav, screenshot)
        [run] = result["runs"]
        sid = run["stream_id"]
        await events.wait_for(
            lambda evs: any(
                e["type"] == "stream.ended" and e["stream"]["stream_id"] == sid for e in evs
            ),
            15,
        )

    # the page showed this browser's stream, its scores, and its end
    assert run["leg"].lower() == "browser" and run["source"].lower() == "webrtc"
    assert run["windows_shown"] >= 3 and 0.0 <= float(run["p_fake_shown"]) <= 1.0
    assert run["ended_status"].startswith("ended")
    assert "first window scored" in run["mic_status"]
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result[
        "console"
    ]
    # it read the events with the token from its URL, and resumed with since= after the drop
    assert all(f"token={TOKEN}" in u for u in result["websockets"])
    assert len(result["websockets"]) == 2 and result["websockets"][1].endswith(
        f"since={run['last_id_before_drop']}&token={TOKEN}"
    )

    # what the daemon's websocket said about the same stream
    mine = [e for e in events.events if e.get("stream", {}).get("stream_id") == sid]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "stream.started" and kinds[-1] == "stream.ended"
    assert mine[0]["stream"]["source"] == "webrtc" and mine[0]["stream"]["leg"] == "browser"
    assert mine[0]["stream"]["labels"]["origin"] == "dashboard"
    scores = {f"{e['score']:.3f}" for e in mine if e["type"] == "window.scored"}
    assert len(scores) >= 1 and run["p_fake_shown"] in scores  # the page shows the daemon's numbers
    assert mine[-1]["summary"]["speech_s"] > 4 and mine[-1]["summary"]["frames_lost"] == 0

    assert screenshot.exists() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000
    print(
        f"\nscreenshot: {screenshot}; first window scored "
        f"{run['first_score_after_mic_s']:.2f} s after the mic opened"
    )


async def run_node(script: str, argv: list[str], timeout_s: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(E2E / script),
        *argv,
        cwd=E2E,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{script} did not finish in time") from None
    lines = out.decode().strip().splitlines()
    assert lines, f"no result from {script} (exit {proc.returncode}): {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and result["ok"], json.dumps(result, indent=1)[-4000:]
    return result


CALLS, TWO_LEGS, FAKE_EVERY, FAKE_OFFSET = 500, 100, 50, 7


async def test_console_holds_500_calls(tiny_model_dir: Path, tmp_path: Path) -> None:
    """500 simulated calls through the real daemon's bus: first paint, frame times and long
    tasks under ~500 events/s, pinning, filters, search, acknowledgement, detail, reload."""
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    from tests.helpers.console_load import ConsoleLoad, call_id, caller_number

    screenshot = ARTIFACTS / "console.png"
    screenshot.unlink(missing_ok=True)
    cfg = daemon_config(tiny_model_dir, tmp_path / "e.db", server={"tokens": [TOKEN]})
    async with running_daemon(cfg) as daemon:
        assert daemon.bus is not None and daemon.store is not None
        load = ConsoleLoad(daemon.bus)
        fakes = load.populate(CALLS, TWO_LEGS, FAKE_EVERY, FAKE_OFFSET)
        late = 420
        stop = asyncio.Event()
        live = asyncio.create_task(load.run_live(stop, set(fakes), late, late_after_s=4.0))
        try:
            result = await run_node(
                "console.spec.mjs",
                [
                    "--url",
                    f"{server_url(daemon)}/?token={TOKEN}",
                    "--calls",
                    str(CALLS),
                    "--alerting",
                    str(len(fakes)),
                    "--late",
                    call_id(late),
                    "--search",
                    caller_number(123),
                    "--open",
                    call_id(57),
                    "--screenshot",
                    str(screenshot),
                ],
                timeout_s=150,
            )
        finally:
            stop.set()
            await live
        acks = daemon.store.read_since(0, types=["alert.acknowledged"], limit=100)

    figures = result["load"]
    print(
        f"\nconsole with {CALLS} calls: first row {result['first_row_ms']} ms, all {CALLS} "
        f"{result['all_calls_ms']} ms after navigation; {result['rows_in_dom']} rows in the DOM\n"
        f"page timings (ms since navigation): {result['marks']}\n"
        f"under {figures['events_per_s']:.0f} events/s for {figures['seconds']:.1f} s while "
        f"scrolling: frame p50 {figures['frame_ms_p50']:.1f} ms, p95 {figures['frame_ms_p95']:.1f}"
        f" ms, p99 {figures['frame_ms_p99']:.1f} ms, max {figures['frame_ms_max']:.1f} ms; long "
        f"tasks {figures['longtasks']} (total {figures['longtask_ms_total']:.0f} ms, max "
        f"{figures['longtask_ms_max']:.0f} ms); console script time: events "
        f"{figures['script_ms_events']:.0f} ms, drawing {figures['script_ms_draw']:.0f} ms over "
        f"{figures['draws']} draws; screenshot {screenshot}"
    )
    assert not [c for c in result["console"] if c.startswith(("error", "pageerror"))], result[
        "console"
    ]
    # virtualised: a screenful of rows, not 500
    assert result["rows_in_dom"] < 80
    assert figures["events_per_s"] > 100 and figures["frames"] > 0
    # pinned: the alerting calls (the late one included) are the top rows, all raised
    top = result["top_rows"]
    assert {r["call"] for r in top} == {call_id(i) for i in [*fakes, late]}, top
    assert all("alert" in r["cls"].split() for r in top), top
    # filters and search
    assert result["shown_twilio"] == f"{CALLS // 4} of {CALLS} calls"
    assert result["shown_agent"] == f"{TWO_LEGS} of {CALLS} calls"
    assert result["shown_billing"] == f"{len(range(0, CALLS, 3))} of {CALLS} calls"
    assert result["shown_alerting"] == f"{len(fakes) + 1} of {CALLS} calls"
    assert result["search_rows"] == [call_id(123)]
    # acknowledged: shown, stored, replayed after a reload
    assert result["acked_pill"] == "ACK Dana" and result["after_reload_pill"] == "ACK Dana"
    assert {a["stream"]["call_id"] for a in acks} == {result["acked_call"], call_id(57)}
    assert all(a["by"] == "Dana" for a in acks)
    d = result["detail"]
    assert d["legs"] == ["caller", "agent"] and d["history"] > 5
    assert d["ack"] and d["ack"].startswith("acknowledged by Dana")
    assert f"caller={caller_number(57)}" in d["identity"], d["identity"]
    assert screenshot.exists() and screenshot.stat().st_size > 20_000


def test_console_model_in_node() -> None:
    """The console's call model (static/state.js) alone: pruning never drops a live call,
    pinning, acknowledgements, the stream-end clear, v1 events, identity, search, filters."""
    if not shutil.which("node"):
        pytest.skip("node is not installed (Debian: apt install nodejs)")
    import subprocess

    r = subprocess.run(
        ["node", str(E2E / "console_state.test.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[-1])["ok"] is True
