"""Figures for the WebRTC note (not a test: run by hand; every loop is bounded in count and time).

    .venv/bin/python -m tests.helpers.figures_webrtc --models-dir DIR --wav speech.wav \\
        [--peers 1,4] [--latency-runs 5]

- CPU per WebRTC stream: ``streamd run`` as a subprocess; N aiortc senders in another process,
  each playing the WAV in a loop; the daemon's CPU time from /proc over a fixed interval, idle
  subtracted, divided by N. It includes Opus decoding, resampling, VAD and scoring.
- Speech-to-first-score: headless Chromium (tests/e2e/dashboard.spec.mjs, the WAV as the fake
  microphone) from getUserMedia resolving to the first ``window.scored`` of its own stream
  reaching the page, over several mic starts; p50 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send(url: str, wav: str, n: int, seconds: float) -> None:
    """N sending peers, each looping the WAV, for ``seconds``."""
    from tests.helpers.webrtc import WavSender

    senders = []
    for i in range(n):
        s = WavSender(Path(wav), loop=True)
        status = await s.connect(url, {"bench": str(i)})
        assert status == 200, status
        senders.append(s)
    await asyncio.gather(*(s.wait_connected() for s in senders))
    print("connected", flush=True)
    await asyncio.sleep(seconds)
    await asyncio.gather(*(s.close() for s in senders))


def measure_cpu(url: str, pid: int, wav: str, n: int, interval: float) -> float:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--send",
            url,
            "--wav",
            wav,
            "--n",
            str(n),
            "--seconds",
            str(interval + 6),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.stdout.readline().strip() != "connected":
        pass
    time.sleep(3)  # past the first windows' warm-up
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(interval)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    proc.wait(interval + 30)
    return (c1 - c0) / (t1 - t0)


def latency(url: str, wav: str, runs: int) -> list[float]:
    shot = Path(tempfile.mkdtemp()) / "figures.png"
    out = subprocess.run(
        [
            "node",
            str(ROOT / "tests/e2e/dashboard.spec.mjs"),
            "--url",
            url,
            "--wav",
            wav,
            "--screenshot",
            str(shot),
            "--runs",
            str(runs),
            "--timeout-s",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=60 + 30 * runs,
        cwd=ROOT / "tests/e2e",
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    return [r["first_score_after_mic_s"] for r in result["runs"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir")
    ap.add_argument("--wav", required=True)
    ap.add_argument("--peers", default="1,4")
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--send")
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    if a.send:
        asyncio.run(send(a.send, a.wav, a.n, a.seconds))
        return 0
    port = free_port()
    tmp = Path(tempfile.mkdtemp())
    env = {
        **os.environ,
        "STREAMD_SERVER__PORT": str(port),
        "STREAMD_STORE__PATH": str(tmp / "e.db"),
        "STREAMD_MODEL__PROVIDERS": "[cpu]",
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "streamd", "run", "--models-dir", a.models_dir],
        env=env,
        stderr=open(tmp / "daemon.log", "w"),  # noqa: SIM115 (lives as long as the daemon)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(1)
        c0 = cpu_seconds(daemon.pid)
        time.sleep(5)
        idle = (cpu_seconds(daemon.pid) - c0) / 5
        print(f"daemon idle: {idle * 100:.1f}% of one core")
        for n in [int(x) for x in a.peers.split(",")]:
            busy = measure_cpu(url, daemon.pid, a.wav, n, a.interval)
            print(
                f"{n} WebRTC peer(s): daemon {busy * 100:.1f}% of one "
                f"core -> {(busy - idle) / n * 100:.1f}% per stream"
            )
        if a.latency_runs:
            lat = latency(url + "/", a.wav, a.latency_runs)
            print(
                "speech into the browser -> first window.scored on the page: "
                f"p50 {statistics.median(lat):.2f} s, max {max(lat):.2f} s over "
                f"{len(lat)} runs ({', '.join(f'{x:.2f}' for x in lat)})"
            )
    finally:
        daemon.terminate()
        daemon.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
