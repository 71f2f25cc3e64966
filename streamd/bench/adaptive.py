"""``streamd bench adaptive``: what adaptive scoring saves and what it costs in detection.

Labelled calls from ../shared (clips of one source back to back, through 8 kHz G.711 mu-law)
go through the daemon's hub twice: with a fixed hop (today) and with ``windows.adaptive`` on.
Audio is fed a packet at a time and each window's score is back before the next packet, as
on a live call whose scoring keeps up, so the adaptive hop sees the scores it would see live.

Per kind of call it prints windows per call-minute, calls alerted, and the detection delay:
the stream time from the start of the synthetic voice to the end of the window that raised the
alert (compute latency not included). ``switch`` calls are real speech, then a synthetic voice
from the middle on with no re-INVITE: the stream was calm when the fake began, the slowest
case for adaptive scoring. Both runs share a score cache (the same window is scored once).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import statistics
import time
from collections import defaultdict
from typing import Any

import numpy as np

from streamd.bench.capacity import build_config
from streamd.bench.speech import PHONE_RATE, Call, build_calls, find_shared, shared_clips
from streamd.bench.speech import switch_calls as make_switch_calls
from streamd.config import Config
from streamd.events.bus import EventBus
from streamd.model.session import Detector
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubObserver, StreamHub
from streamd.pipeline.scorer import Scorer
from streamd.pipeline.stream import StreamPipeline


def register(sub: Any) -> None:
    p = sub.add_parser(
        "adaptive",
        help="windows per call-minute and detection delay, fixed hop vs adaptive scoring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="installed model name (default: the only one installed)")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--shared", help="the shared data folder (default: ../shared when present)")
    p.add_argument("--calls", type=int, default=6, help="calls of each kind (default 6)")
    p.add_argument("--call-s", type=float, default=40.0, help="seconds per call (default 40)")
    p.add_argument(
        "--real-sources",
        help="comma-separated ../shared/data folders to take real calls from (default: any)",
    )
    p.add_argument("--calm-below", type=float, default=0.2)
    p.add_argument("--calm-windows", type=int, default=3)
    p.add_argument("--long-hop", type=float, default=3.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


class _Memo:
    """Scores each distinct window once across both runs (the model is deterministic)."""

    def __init__(self, det: Detector) -> None:
        self.inner = det.score_windows
        self.cache: dict[bytes, tuple[float, np.ndarray]] = {}
        self.scored = 0
        self.detector = dataclasses.replace(det)
        setattr(self.detector, "score_windows", self.score_windows)  # noqa: B010

    def score_windows(
        self, ws: list[np.ndarray], places: object = None
    ) -> tuple[np.ndarray, np.ndarray]:
        keys = [hashlib.blake2b(w.tobytes(), digest_size=16).digest() for w in ws]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            p, logits = self.inner([ws[i] for i in todo])
            for j, i in enumerate(todo):
                self.cache[keys[i]] = (float(p[j]), logits[j])
            self.scored += len(todo)
        p_all = np.array([self.cache[k][0] for k in keys], np.float32)
        return p_all, np.stack([self.cache[k][1] for k in keys])


class _PerStream(HubObserver):
    def __init__(self) -> None:
        self.queued: dict[str, int] = defaultdict(int)

    def window_queued(self, stream: StreamPipeline) -> None:
        self.queued[stream.info.stream_id] += 1


async def _play(hub: StreamHub, counts: _PerStream, key: str, call: Call) -> None:
    info = StreamInfo.new(source="bench", leg="caller", stream_id=key)
    # simulated time: scores come back before the next packet, however fast that is
    stream = hub.open_stream(info, 8000, realtime=False)
    pkt = PHONE_RATE // 50
    for at in range(0, len(call.audio), pkt):
        stream.write(call.audio[at : at + pkt])
        while counts.queued[key] > stream.windows:  # scores back before the next packet
            await asyncio.sleep(0.002)
    await stream.close("end of call")


async def run_calls(det: Detector, config: Config, calls: list[Call]) -> list[dict[str, Any]]:
    m = config.model
    scorer = Scorer(det, m.batch_max, m.batch_wait_ms)
    await scorer.start()
    bus = EventBus()
    hub = StreamHub(config, det, scorer, bus)
    counts = _PerStream()
    hub.observers.append(counts)
    out: dict[str, dict[str, Any]] = {
        f"call-{i}": {
            "kind": c.label,
            "source": c.source,
            "seconds": c.seconds,
            "switch_s": c.switch_s,
        }
        | {"windows": 0, "alert_end_s": None, "scores": []}
        for i, c in enumerate(calls)
    }

    def sink(ev: dict[str, Any]) -> None:
        rec = out.get(ev.get("stream", {}).get("stream_id", ""))
        if rec is None:
            return
        if ev["type"] == "window.scored":
            rec["windows"] += 1
            rec["scores"].append(ev["score"])
        elif (
            ev["type"] == "alert.raised"
            and rec["alert_end_s"] is None
            and (ev["window"]["end_s"] > rec["switch_s"] or rec["kind"] != "switch")
        ):
            rec["alert_end_s"] = ev["window"]["end_s"]

    bus.add_sink(sink)
    gate = asyncio.Semaphore(8)

    async def one(i: int, c: Call) -> None:
        async with gate:
            await _play(hub, counts, f"call-{i}", c)

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    finally:
        await scorer.close()
    return list(out.values())


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    out = {}
    for kind, rs in sorted(by_kind.items()):
        minutes = sum(r["seconds"] for r in rs) / 60
        delays = [r["alert_end_s"] - r["switch_s"] for r in rs if r["alert_end_s"] is not None]
        scores = [s for r in rs for s in r["scores"]]
        out[kind] = {
            "calls": len(rs),
            "windows_per_call_minute": sum(r["windows"] for r in rs) / minutes if minutes else 0,
            "alerted": sum(r["alert_end_s"] is not None for r in rs),
            "delay_median_s": statistics.median(delays) if delays else None,
            "delay_max_s": max(delays) if delays else None,
            "score_median": statistics.median(scores) if scores else None,
        }
    return out


def run(args: argparse.Namespace) -> int:
    from streamd.model.manifest import resolve_manifest

    shared = find_shared(args.shared)
    if shared is None:
        print("../shared/data is absent: no labelled calls to measure; skipped")
        return 0
    t0 = time.monotonic()
    sources = shared_clips(shared, "real")
    if args.real_sources:
        keep = {x.strip() for x in args.real_sources.split(",")}
        sources = {k: v for k, v in sources.items() if k in keep}
    real = build_calls(sources, "real", args.calls, args.call_s)
    fake = build_calls(shared_clips(shared, "fake"), "fake", args.calls, args.call_s)
    switch = make_switch_calls(real, fake[::-1], args.call_s / 2)
    calls = real + fake + switch
    det = Detector.load(resolve_manifest(args.models_dir, args.model), ["cpu"])
    memo = _Memo(det)
    adaptive = {
        "windows.adaptive.enabled": True,
        "windows.adaptive.calm_below": args.calm_below,
        "windows.adaptive.calm_windows": args.calm_windows,
        "windows.adaptive.long_hop_s": args.long_hop,
    }
    results = {}
    for name, overrides in (("fixed hop", {}), ("adaptive", adaptive)):
        cfg = build_config({}, overrides)
        results[name] = summarize(asyncio.run(run_calls(memo.detector, cfg, calls)))
    if args.json:
        print(json.dumps({"model": det.name, "results": results, "windows_scored": memo.scored}))
        return 0
    print(
        f"# {det.name}; {len(real)} real, {len(fake)} fake, {len(switch)} switch calls of "
        f"{args.call_s:.0f} s through G.711 mu-law; adaptive: calm_below {args.calm_below}, "
        f"{args.calm_windows} calm windows, long hop {args.long_hop} s"
    )
    print(
        f"{'kind':<8} {'run':<10} {'win/call-min':>12} {'alerted':>8} {'delay p50 s':>11} "
        f"{'delay max s':>11} {'median p_fake':>13}"
    )
    for kind in results["fixed hop"]:
        for name, res in results.items():
            r = res[kind]
            d50 = (
                f"{r['delay_median_s']:11.1f}" if r["delay_median_s"] is not None else f"{'-':>11}"
            )
            dmx = f"{r['delay_max_s']:11.1f}" if r["delay_max_s"] is not None else f"{'-':>11}"
            med = f"{r['score_median']:13.3f}" if r["score_median"] is not None else f"{'-':>13}"
            print(
                f"{kind:<8} {name:<10} {r['windows_per_call_minute']:12.1f} "
                f"{r['alerted']:>4}/{r['calls']:<3} {d50} {dmx} {med}"
            )
    print(
        f"# {memo.scored} distinct windows scored in {time.monotonic() - t0:.0f} s, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return 0
