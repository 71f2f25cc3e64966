"""``streamd bench sip``: concurrent SIP calls held, CPU per call, and junk absorbed.

``streamd run`` runs as a child process with ``sources.sip`` on loopback and the given model (use
a tiny one, so the figures measure ingest, not inference); sipp (Debian ``sip-tester``) places the
calls, each streaming the clip as PCMU in real time. Window lag is when a ``window.scored`` event
reaches a ``/v1/events`` client, minus when its audio ended (the receipt of the stream's
``stream.started`` plus the window's ``end_s``); windows at the very end of a call (scored on
BYE) are left out.

  calls  for each N: N calls at once. Lag p50/p99/max, frames lost, and the daemon's CPU time
         (``/proc``) while all N are up, idle subtracted, per call: the whole process, and its
         event loop thread alone (everything but inference). The figure is the largest N whose
         p99 lag stays under ``--max-lag``.
  junk   one real call while a child process sends random datagrams at R per second, half to
         the SIP port and half to the call's RTP port. Per R: the call's lag and frames lost, and
         what the daemon counted. The figure is the largest R at which the call stays on time.

Every phase is bounded in time; sipp and the junk sender share the machine with the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamd.bench.sipp_harness import (
    SCENARIO,
    SipDaemon,
    free_port,
    g711_clip,
    pct,
    run_sipp,
    wait_until,
    window_lags,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sip",
        help="SIP/RTP ingest: concurrent calls held, CPU per call, junk absorbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models-dir",
        required=True,
        help="models directory (a tiny model keeps inference out of it)",
    )
    p.add_argument("--model", default=None, help="model name (default: the only one installed)")
    p.add_argument(
        "--calls", default="10,25,50,100", help="concurrent call counts (default 10,25,50,100)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length of each call (default 20)")
    p.add_argument(
        "--junk-rates",
        default="2000,10000,30000",
        help="junk datagrams/s to try (default 2000,10000,30000)",
    )
    p.add_argument(
        "--audio",
        help="speech file streamed by every call (default: a synthetic speech-like signal)",
    )
    p.add_argument(
        "--max-lag",
        type=float,
        default=1.0,
        help="on time: p99 window lag under this (s, default 1)",
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run)


def _junk_sender(ports: tuple[int, int], rate: float, seconds: float, sent: Any) -> None:
    """Random datagrams (1-1200 bytes) alternating between two ports, paced per 5 ms tick."""
    rng = np.random.default_rng(1)
    pool = [
        rng.integers(0, 256, int(rng.integers(1, 1200)), dtype=np.uint8).tobytes()
        for _ in range(512)
    ]
    targets = [("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])]
    count, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(rate * elapsed) - count
            for _ in range(max(0, due)):
                with contextlib.suppress(
                    OSError
                ):  # a refused port answers ECONNREFUSED on a later send
                    s.sendto(pool[count % 512], targets[count % 2])
                count += 1
            time.sleep(0.005)
        sent.value = count / (time.monotonic() - start)


async def _calls_phase(tmp: Path, daemon: SipDaemon, n: int, seconds: float) -> dict[str, Any]:
    service = f"calls{n}"
    (c0, _), t0 = daemon.cpu(), time.monotonic()
    await asyncio.sleep(2.0)
    idle = (daemon.cpu()[0] - c0) / (time.monotonic() - t0)
    run = asyncio.ensure_future(run_sipp(tmp, daemon, service, n, seconds))

    def up() -> int:
        streams = daemon.of(service)
        return sum(1 for s in streams.values() if s["started"] and not s["summary"])

    all_up = await wait_until(lambda: up() >= n, 30)
    (c1, l1), t1 = daemon.cpu(), time.monotonic()
    await wait_until(lambda: up() < n or run.done(), seconds + 30)
    (c2, l2), t2 = daemon.cpu(), time.monotonic()
    code = await run
    await wait_until(lambda: sum(1 for s in daemon.of(service).values() if s["summary"]) >= n, 20)
    streams = daemon.of(service)
    lags = window_lags(streams)
    busy = (c2 - c1) / max(t2 - t1, 1e-6)
    return {
        "calls": n,
        "sipp_exit": code,
        "all_up": all_up,
        "streams": len(streams),
        "windows": sum(len(s["windows"]) for s in streams.values()),
        "lag_p50_s": pct(lags, 50),
        "lag_p99_s": pct(lags, 99),
        "lag_max_s": round(max(lags), 3) if lags else None,
        "frames_lost": sum((s["summary"] or {}).get("frames_lost", 0) for s in streams.values()),
        "steady_s": round(t2 - t1, 1),
        "cpu_pct": round(100 * busy, 1),
        "idle_cpu_pct": round(100 * idle, 1),
        "cpu_pct_per_call": round(100 * (busy - idle) / n, 2),
        "loop_cpu_pct_per_call": round(100 * (l2 - l1) / max(t2 - t1, 1e-6) / n, 2),
    }


async def _junk_phase(
    tmp: Path, daemon: SipDaemon, rate: float, seconds: float, rtp_port: int
) -> dict[str, Any]:
    service = f"junk{int(rate)}"
    before = daemon.status()
    run = asyncio.ensure_future(run_sipp(tmp, daemon, service, 1, seconds))
    await wait_until(lambda: any(s["started"] for s in daemon.of(service).values()), 20)
    await asyncio.sleep(0.5)
    sent = multiprocessing.get_context("spawn").Value("d", 0.0)
    sender = multiprocessing.get_context("spawn").Process(
        target=_junk_sender, args=((daemon.sip, rtp_port), rate, seconds - 1.5, sent), daemon=True
    )
    (c0, _), t0 = daemon.cpu(), time.monotonic()
    sender.start()
    await asyncio.to_thread(sender.join, seconds + 30)
    cpu = (daemon.cpu()[0] - c0) / (time.monotonic() - t0)
    if sender.is_alive():
        sender.kill()
    code = await run
    await wait_until(lambda: any(s["summary"] for s in daemon.of(service).values()), 20)
    after = daemon.status()
    streams = daemon.of(service)
    lags = window_lags(streams)
    summary = next(iter(streams.values()))["summary"] or {} if streams else {}
    return {
        "rate": rate,
        "sent_per_s": round(sent.value),
        "sipp_exit": code,
        "windows": len(lags),
        "lag_p50_s": pct(lags, 50),
        "lag_p99_s": pct(lags, 99),
        "lag_max_s": round(max(lags), 3) if lags else None,
        "frames_lost": summary.get("frames_lost"),
        "duration_s": summary.get("duration_s"),
        "cpu_pct": round(100 * cpu, 1),
        "sip_junk_counted": after["sip"]["junk"] - before["sip"]["junk"],
        "rtp_junk_counted": sum(
            after["rtp"][k] - before["rtp"][k]
            for k in ("foreign", "junk", "rtcp", "oversize", "wrong_pt")
        ),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.calls.split(",") if x]
    rates = [float(x) for x in args.junk_rates.split(",") if x]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bench.xml").write_text(SCENARIO)
        (tmp / "clip.g711").write_bytes(g711_clip(args.audio, args.seconds))
        low = 20000 + 2 * (free_port() % 5000)
        results: dict[str, Any] = {"calls": [], "junk": [], "cores": os.cpu_count()}
        if counts:
            async with SipDaemon(
                tmp, args, (low, low + 2 * max(counts) + 100), max(counts) + 10
            ) as daemon:
                for n in counts:
                    results["calls"].append(await _calls_phase(tmp, daemon, n, args.seconds))
                    _print(results["calls"][-1], args.json)
        if rates:
            async with SipDaemon(
                tmp, args, (low, low), 4
            ) as daemon:  # one RTP port: the junk's target
                for rate in rates:
                    results["junk"].append(await _junk_phase(tmp, daemon, rate, args.seconds, low))
                    _print(results["junk"][-1], args.json)
    ok = [
        r["calls"]
        for r in results["calls"]
        if r["all_up"] and (r["lag_p99_s"] or 1e9) <= args.max_lag and r["frames_lost"] == 0
    ]
    held = [
        r["sent_per_s"]
        for r in results["junk"]
        if (r["lag_p99_s"] or 1e9) <= args.max_lag and r["frames_lost"] == 0
    ]
    results["held_calls"] = max(ok, default=0)
    results["junk_absorbed_per_s"] = max(held, default=0)
    return results


def _print(row: dict[str, Any], quiet: bool) -> None:
    if not quiet:
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def run(args: argparse.Namespace) -> int:
    import shutil

    if shutil.which("sipp") is None:
        print("streamd bench sip: needs sipp (Debian: apt-get install sip-tester)", file=sys.stderr)
        return 2
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(results))
    else:
        print(
            f"calls held with p99 window lag <= {args.max_lag} s and no frames "
            f"lost: {results['held_calls']} (on {results['cores']} cores)"
        )
        print(
            "junk absorbed while a real call stays on time: "
            f"{results['junk_absorbed_per_s']} datagrams/s"
        )
    return 0
