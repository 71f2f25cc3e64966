"""``streamd bench triton``: remote scoring on a Triton tier vs onnxruntime in-process.

Start a server first (``.venv-triton/bin/streamd serve-model --model NAME``). Both sides use the
daemon's own code: ``Detector`` + ``Scorer`` locally, ``RemoteDetector`` + ``RemoteScorer``
remotely.
  batch 1   windows scored one at a time, back to back: p50 per window, local and remote; the
            difference is the per-window cost of going over gRPC
  streams   S simulated streams each submit one window per hop (staggered over the hop) for
            ``--seconds``: window latency p50/p99 both ways, and from Triton's own metrics the
            requests and windows per model execution (its dynamic batching at work)
Every phase is bounded by its count or ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from streamd.config.sections import TritonConfig
from streamd.model.manifest import resolve_manifest
from streamd.model.remote import RemoteDetector
from streamd.model.session import Detector
from streamd.pipeline.remote_scorer import RemoteScorer
from streamd.pipeline.scorer import Scorer


def register(sub: Any) -> None:
    p = sub.add_parser(
        "triton",
        help="remote (Triton) vs local scoring: per-window overhead, batching per stream count",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="installed model name (also its Triton name)")
    p.add_argument("--models-dir", default="models", metavar="DIR")
    p.add_argument("--server", default="127.0.0.1:8001", help="Triton gRPC host:port")
    p.add_argument(
        "--metrics-url", default="http://127.0.0.1:8002/metrics", help="Triton's /metrics"
    )
    p.add_argument("--single", type=int, default=100, help="batch-1 windows each way")
    p.add_argument("--streams", default="8,32,128", help="stream counts (default 8,32,128)")
    p.add_argument("--seconds", type=float, default=10.0, help="per stream count and side")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between a stream's windows")
    p.add_argument("--batch-max", type=int, default=8, help="the daemon's model.batch_max")
    p.add_argument("--workers", type=int, default=4, help="the daemon's model.workers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def triton_counters(url: str, model: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for key in ("nv_inference_request_success", "nv_inference_exec_count", "nv_inference_count"):
        m = re.search(rf'^{key}{{model="{re.escape(model)}",version="1"}} (\S+)$', text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    return out


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(len(v) * q))] * 1e3, 2) if v else float("nan")


async def single(
    local: Detector, remote: RemoteDetector, n: int, window: np.ndarray
) -> dict[str, Any]:
    loc, rem = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        await asyncio.to_thread(local.score_windows, [window])
        loc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await remote.score_windows_async([window])
        rem.append(time.perf_counter() - t0)
    return {
        "local_p50_ms": _pct(loc, 0.5),
        "remote_p50_ms": _pct(rem, 0.5),
        "overhead_p50_ms": round(_pct(rem, 0.5) - _pct(loc, 0.5), 2),
    }


async def streams(
    scorer: Scorer, n: int, args: argparse.Namespace, window: np.ndarray
) -> list[float]:
    await scorer.start()
    lat: list[float] = []
    end = time.perf_counter() + args.seconds

    async def one(k: int) -> None:
        await asyncio.sleep(args.hop * k / n)  # streams spread over the hop, as calls are
        t_next = time.perf_counter()
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await scorer.submit(window)
            lat.append(time.perf_counter() - t0)
            t_next += args.hop
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))

    await asyncio.gather(*(one(k) for k in range(n)))
    await scorer.close()
    return lat


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    manifest = resolve_manifest(args.models_dir, args.model)
    local = Detector.load(manifest, ["cpu"])
    tcfg = TritonConfig(servers=[args.server], model_name=args.model, timeout_s=30)
    remote = RemoteDetector.from_config(manifest, tcfg)
    rng = np.random.default_rng(0)
    window = (0.1 * rng.standard_normal(local.manifest.max_samples)).astype(np.float32)
    out: dict[str, Any] = {
        "model": args.model,
        "single": await single(local, remote, args.single, window),
    }
    out["streams"] = []
    for n in [int(x) for x in args.streams.split(",")]:
        before = triton_counters(args.metrics_url, args.model)
        rs = RemoteScorer(remote, args.batch_max, 20.0, workers=args.workers)
        rlat = await streams(rs, n, args, window)
        after = triton_counters(args.metrics_url, args.model)
        remote = RemoteDetector.from_config(manifest, tcfg)  # the scorer closed the last one
        llat = await streams(
            Scorer(local, args.batch_max, 20.0, workers=args.workers), n, args, window
        )
        d = {k: after[k] - before[k] for k in after}
        execs = max(d["nv_inference_exec_count"], 1.0)
        out["streams"].append(
            {
                "streams": n,
                "windows": len(rlat),
                "remote_p50_ms": _pct(rlat, 0.5),
                "remote_p99_ms": _pct(rlat, 0.99),
                "local_p50_ms": _pct(llat, 0.5),
                "local_p99_ms": _pct(llat, 0.99),
                "requests_per_exec": round(d["nv_inference_request_success"] / execs, 2),
                "windows_per_exec": round(d["nv_inference_count"] / execs, 2),
            }
        )
    await remote.aclose()
    return out


def run(args: argparse.Namespace) -> int:
    if not Path(args.models_dir).is_dir():
        print(f"streamd bench triton: no models dir {args.models_dir}")
        return 2
    result = asyncio.run(_main(args))
    if args.json:
        print(json.dumps(result))
        return 0
    s = result["single"]
    print(f"model {result['model']}, one window at a time (p50):")
    print(
        f"  local {s['local_p50_ms']} ms, remote {s['remote_p50_ms']} ms, "
        f"overhead {s['overhead_p50_ms']} ms per window"
    )
    print(
        f"streams each sending a window per {args.hop:g} s, daemon batch_max {args.batch_max}, "
        f"workers {args.workers}:"
    )
    for r in result["streams"]:
        print(
            f"  {r['streams']:>4} streams: remote p50 {r['remote_p50_ms']} / p99 "
            f"{r['remote_p99_ms']} ms, local p50 {r['local_p50_ms']} / p99 "
            f"{r['local_p99_ms']} ms; Triton: {r['requests_per_exec']} requests and "
            f"{r['windows_per_exec']} windows per execution ({r['windows']} windows)"
        )
    return 0
