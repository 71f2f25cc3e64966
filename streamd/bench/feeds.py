"""``streamd bench feeds``: how many Twilio Media Streams connections one daemon holds in real time.

The daemon runs here, as ``streamd run`` would (store, bus, ``/v1/events`` server, the Twilio
adapter, the real model). A child process (its own core where there is one) opens N Twilio
websockets and sends each one 20 ms mu-law frames at real-time pacing, every connection starting
at a different point of the audio, for ``--seconds``. Per step of the ramp it reports:

  held         every connection accepted, streamed and ended with its windows scored on time
  late         client sends behind schedule (the load generator's own lag: trust the row only
               when it is small)
  frame>queue  message read by the adapter -> the window it completes queued for scoring
  send>queue   client ``send`` -> window queued: adds loopback, aiohttp parsing and loop wait
  queue>score  window queued -> score returned (batching + inference), from ``window.scored``
  loop lag     how late a 50 ms timer on the daemon's event loop fires
  cpu          daemon process CPU (user + system) / wall time; 100 % is one core

Clock: both processes read ``time.monotonic`` (CLOCK_MONOTONIC), so send>queue is one clock.
The ramp stops at the first step that is not held. Every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamd.pipeline.hub import HubObserver

FRAME = 160  # 20 ms of 8 kHz mu-law, what Twilio sends
FRAME_S = 0.02


def register(sub: Any) -> None:
    p = sub.add_parser(
        "feeds",
        help="concurrent Twilio feed connections held in real time, and frame-to-queue latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default=None, help="installed model name (default: config / the only one)"
    )
    p.add_argument("--models-dir", default="models")
    p.add_argument(
        "--connections",
        default="10,50,100,200",
        help="ramp of connection counts (default 10,50,100,200)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="real-time seconds each step streams (default 20)",
    )
    p.add_argument(
        "--audio",
        nargs="*",
        default=[],
        help="speech files to play (default: synthetic speech-like audio)",
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop the ramp after this long")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run)


def _pct(values: list[float] | np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def load_clip(paths: list[str], seconds: float = 30.0) -> np.ndarray:
    """8 kHz mu-law bytes: the files given, or speech-like synthesis."""
    from streamd.codecs.g711 import ulaw_encode
    from streamd.pipeline.audio import load_audio

    if paths:
        audio = np.concatenate([load_audio(p) for p in paths])[: int(seconds * 16000)]
    else:
        from streamd.export.probe_audio import speechlike

        audio = speechlike(int(min(seconds, 12.0) * 16000))
    import soxr

    pcm = np.clip(soxr.resample(audio, 16000, 8000) * 32768.0, -32768, 32767).astype(np.int16)
    data = ulaw_encode(pcm)
    return np.frombuffer(data[: len(data) // FRAME * FRAME], np.uint8)


class _Probe(HubObserver):
    """Hub observer and bus sink: window queue times by (connection, frame), scoring latencies."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.queued: list[tuple[int, int, float]] = []
        self.scored_ms: list[float] = []
        self.windows = 0
        self.ended: list[dict[str, Any]] = []
        self.started = 0

    def window_queued(self, stream: Any) -> None:
        conn = stream.info.labels.get("conn")
        if (
            conn is not None and self.source.arrival is not None
        ):  # not the windows flushed at ``stop``
            self.queued.append((int(conn), stream.native_samples // FRAME - 1, time.monotonic()))

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == "window.scored":
            self.windows += 1
            self.scored_ms.append(float(event.get("latency_ms", 0.0)))
        elif event["type"] == "stream.ended":
            self.ended.append(event["summary"])
        elif event["type"] == "stream.started":
            self.started += 1


async def _loop_lag(out: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.05)
        out.append((loop.time() - t - 0.05) * 1000.0)


async def _phase(daemon: Any, n: int, seconds: float, clip_path: Path, tmp: Path) -> dict[str, Any]:
    from streamd.ingest.feeds.connection import LatencyWindow

    source = next(s for s in daemon.sources if s.name == "twilio")
    source.latency = LatencyWindow(size=200_000)
    messages0 = source.counters.messages
    probe = _Probe(source)
    daemon.hub.observers.append(probe)
    daemon.bus.add_sink(probe)
    lag: list[float] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(_loop_lag(lag, stop))
    sent_path = tmp / f"sent-{n}.npy"
    url = daemon.server.url.replace("http", "ws") + source.path
    scorer = daemon.scorer
    busy0, scored0 = scorer.busy_s, scorer.windows
    cpu0, loop0, t0 = os.times(), time.thread_time(), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd.bench.feeds",
        "client",
        url,
        str(n),
        str(seconds),
        str(clip_path),
        str(sent_path),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), seconds + 120)
        client = json.loads(line) if line else {"error": "client exited early"}
        deadline = time.monotonic() + 60
        while len(probe.ended) < probe.started and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await asyncio.wait_for(proc.wait(), 30)
        wall, cpu1, loop_cpu = time.monotonic() - t0, os.times(), time.thread_time() - loop0
        stop.set()
        await lag_task
        daemon.hub.observers.remove(probe)
        daemon.bus.remove_sink(probe)
    e2e: list[float] = []
    if sent_path.exists():
        sent = np.load(sent_path)
        for conn, frame, t in probe.queued:
            if 0 <= conn < sent.shape[0] and 0 <= frame < sent.shape[1] and sent[conn, frame] > 0:
                e2e.append((t - sent[conn, frame]) * 1000.0)
    lat = source.latency.values
    frame_ms = np.asarray(lat) * 1000.0
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall
    frames = source.counters.messages - messages0
    infer_ms = 1000 * (scorer.busy_s - busy0) / max(1, scorer.windows - scored0)
    lost = sum(int(s.get("frames_lost", 0)) for s in probe.ended)
    queue_p99 = _pct(probe.scored_ms, 99)
    lag_p99 = _pct(lag, 99)
    held = (
        client.get("connected") == n
        and probe.started == n
        and len(probe.ended) == n
        and lost == 0
        and probe.windows > 0
        and queue_p99 is not None
        and queue_p99 < daemon.config.windows.hop_s * 1000
        and lag_p99 is not None
        and lag_p99 < 100.0
    )
    return {
        "connections": n,
        "held": bool(held),
        "client": client,
        "streams_started": probe.started,
        "streams_ended": len(probe.ended),
        "windows_scored": probe.windows,
        "windows_per_s": round(probe.windows / seconds, 1),
        "frames_lost": lost,
        "frame_to_queue_ms": {
            "p50": _pct(frame_ms, 50),
            "p99": _pct(frame_ms, 99),
            "n": len(frame_ms),
        },
        "send_to_queue_ms": {"p50": _pct(e2e, 50), "p99": _pct(e2e, 99), "n": len(e2e)},
        "queue_to_score_ms": {"p50": _pct(probe.scored_ms, 50), "p99": queue_p99},
        "loop_lag_ms": {
            "p50": _pct(lag, 50),
            "p99": lag_p99,
            "max": round(max(lag), 1) if lag else None,
        },
        "cpu_percent": round(100 * cpu, 1),
        "loop_cpu_percent": round(100 * loop_cpu / wall, 1),
        "loop_cpu_us_per_message": round(1e6 * loop_cpu / max(1, frames), 1),
        "scorer_ms_per_window": round(infer_ms, 2),
        "violations": source.counters.violations,
    }


async def measure(args: argparse.Namespace, counts: list[int]) -> list[dict[str, Any]]:
    from streamd.app.daemon import Daemon
    from streamd.config import parse_config

    top = max(counts)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clip_path = tmp / "clip.npy"
        np.save(clip_path, load_clip(args.audio))
        cfg = parse_config(
            {
                "server": {"port": 0, "max_connections": max(512, top + 20)},
                "sources": {
                    "webrtc": {"enabled": False},
                    "max_streams": top + 10,
                    "twilio": {  # every client is on 127.0.0.1: lift the per-source cap too
                        "enabled": True,
                        "max_connections": top + 10,
                        "max_connections_per_source": top + 10,
                    },
                },
                "model": {"dir": args.models_dir, "name": args.model},
                "store": {"path": str(tmp / "events.db")},
                "logging": {"level": "warning"},
            },
            "bench",
        )
        daemon = Daemon(cfg)
        await daemon.start()
        t_start = time.monotonic()
        try:
            for n in counts:
                if time.monotonic() - t_start + args.seconds > args.max_seconds:
                    break
                result = await _phase(daemon, n, args.seconds, clip_path, tmp)
                results.append(result)
                if not result["held"]:
                    break
        finally:
            await daemon.stop()
    return results


async def _client(url: str, n: int, seconds: float, clip_path: str, sent_path: str) -> None:
    """Child process: ``n`` Twilio ``<Stream>``s in real time; one JSON line of client figures."""
    import aiohttp

    clip = np.load(clip_path)
    frames = [
        base64.b64encode(clip[i : i + FRAME].tobytes()).decode() for i in range(0, len(clip), FRAME)
    ]
    ticks = int(seconds / FRAME_S)
    sent = np.zeros((n, ticks))
    late: list[float] = []
    media = '{"event":"media","sequenceNumber":"%d","streamSid":"%s","media":{"track":"inbound","chunk":"%d","timestamp":"%d","payload":"%s"}}'  # noqa: E501
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        sockets = []
        for _ in range(n):
            try:
                sockets.append(await asyncio.wait_for(session.ws_connect(url, autoping=True), 30))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                print(json.dumps({"connected": len(sockets), "error": str(exc)}), flush=True)
                return
        sids = [f"MZbench{i:026d}" for i in range(n)]
        for i, ws in enumerate(sockets):
            start = {
                "streamSid": sids[i],
                "accountSid": "ACbench",
                "callSid": f"CAbench{i:026d}",
                "tracks": ["inbound"],
                "customParameters": {"conn": str(i)},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send_str(
                json.dumps(
                    {"event": "start", "sequenceNumber": "1", "streamSid": sids[i], "start": start}
                )
            )
        offsets = [(i * 37) % len(frames) for i in range(n)]
        t0 = time.monotonic() + 0.1
        for k in range(ticks):
            delay = t0 + k * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, -delay) * 1000.0)
            for i, ws in enumerate(sockets):
                sent[i, k] = time.monotonic()
                await ws.send_str(
                    media % (k + 2, sids[i], k + 1, k * 20, frames[(offsets[i] + k) % len(frames)])
                )
        for i, ws in enumerate(sockets):
            await ws.send_str(
                json.dumps(
                    {
                        "event": "stop",
                        "sequenceNumber": str(ticks + 2),
                        "streamSid": sids[i],
                        "stop": {},
                    }
                )
            )
        np.save(sent_path, sent)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    print(
        json.dumps(
            {
                "connected": n,
                "late_p50_ms": _pct(late, 50),
                "late_p99_ms": _pct(late, 99),
                "late_max_ms": round(max(late), 1),
            }
        ),
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    from streamd.bench.scorer import machine

    counts = [int(x) for x in args.connections.split(",") if x.strip()]
    results = asyncio.run(measure(args, counts))
    info = {
        "machine": machine(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "seconds": args.seconds,
    }
    if args.json:
        print(json.dumps({**info, "runs": results}))
        return 0
    print(
        f"machine: {info['machine']}; load average "
        f"{info['load_avg']}; {args.seconds:.0f} s of real-time audio per step"
    )
    for r in results:
        c = r["client"]
        print(
            f"{r['connections']:>4} connections: {'held' if r['held'] else 'NOT held'}; "
            f"{r['windows_scored']} windows ({r['windows_per_s']}/s), {r['frames_lost']} frames "
            f"lost; late p99 {c.get('late_p99_ms')} ms; frame>queue p50/p99 "
            f"{r['frame_to_queue_ms']['p50']}/{r['frame_to_queue_ms']['p99']} ms; send>queue "
            f"p50/p99 {r['send_to_queue_ms']['p50']}/{r['send_to_queue_ms']['p99']} ms; "
            f"queue>score p50/p99 {r['queue_to_score_ms']['p50']}/{r['queue_to_score_ms']['p99']} "
            f"ms; loop lag p99 {r['loop_lag_ms']['p99']} ms; cpu {r['cpu_percent']} % (event loop "
            f"{r['loop_cpu_percent']} %, {r['loop_cpu_us_per_message']} us/message; scorer "
            f"{r['scorer_ms_per_window']} ms/window in batches)"
        )
    return 0


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "client":
    _, _, _url, _n, _secs, _clip, _sent = sys.argv
    asyncio.run(_client(_url, int(_n), float(_secs), _clip, _sent))
