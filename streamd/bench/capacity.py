"""``streamd bench capacity``: how many live streams one machine holds, and how late alerts are.

N callers of real speech (8 kHz G.711, paced on the packet clock) go through the daemon's own
hub, windower, scorer and event bus in this process. A trial passes when the p99 of window end
to ``window.scored`` stays under ``--bound`` and every window is scored; a galloping, then
binary search finds the largest N that passes. Several code paths (``--path``) are searched in
the same run, one trial of each in turn, so a ratio between them is measured under the same
load; ``today`` is the daemon's defaults, ``new`` the levers of docs/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamd.bench.load import Tracks, TrialResult, run_trial
from streamd.bench.processes import ProcessTrials
from streamd.bench.speech import find_shared, speech_pool
from streamd.config import Config, parse_config
from streamd.errors import UsageError
from streamd.model.session import Detector, RuntimeOptions

# Each path is config overrides on top of the defaults (and of --config).
PRESETS: dict[str, dict[str, Any]] = {
    "today": {},
    "new": {
        "windows.adaptive.enabled": True,
        "windows.length_s": 4.0375,  # AASIST's own window, so front-end reuse applies
        "model.reuse_front_end": True,
        "model.workers": 2,
        "model.threads": 1,
        "model.batch_max": 2,
    },
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "capacity",
        help="largest number of live streams with p99 window-to-event latency under a bound",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="installed model name (default: the only one installed)")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--config", help="a streamd config the paths start from (default: defaults)")
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default="cpu")
    p.add_argument(
        "--path",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="a code path to search: a preset (today, new) or a name with config overrides, "
        "e.g. 'w2:model.workers=2'; repeat to compare in one run (default: today and new)",
    )
    p.add_argument("--speech", type=float, default=1.0, help="share of time talking (default 1)")
    p.add_argument("--hop", type=float, default=1.0, help="windows.hop_s (default 1.0)")
    p.add_argument("--bound", type=float, default=1.5, help="p99 latency bound, s (default 1.5)")
    p.add_argument("--trial-s", type=float, default=20.0, help="audio per trial, s (default 20)")
    p.add_argument("--start", type=int, help="first N to try (default: from a throughput probe)")
    p.add_argument("--max-streams", type=int, default=5000)
    p.add_argument("--packet-ms", type=int, default=20, help="packet size, ms (default 20)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="spread each trial's streams over this many processes, each with its own session "
        "(one event loop cannot feed thousands of streams; default 1: in this process)",
    )
    p.add_argument("--max-seconds", type=float, default=300, help="stop searching after this")
    p.add_argument("--audio", nargs="+", metavar="FILE", help="speech files (default: ../shared)")
    p.add_argument("--shared", help="the shared data folder (default: ../shared when present)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=run)


@dataclass
class Search:
    """Galloping then binary search for the largest passing N, to ``resolution`` of it."""

    start: int
    max_n: int
    resolution: float = 0.1
    lo: int = 0  # largest N that passed
    hi: int | None = None  # smallest N that failed
    trials: list[TrialResult] = field(default_factory=list)
    _next: int | None = None

    def __post_init__(self) -> None:
        self._next = max(1, min(self.start, self.max_n))

    def next(self) -> int | None:
        return self._next

    def record(self, r: TrialResult) -> None:
        self.trials.append(r)
        n = r.streams
        if r.passed:
            self.lo = max(self.lo, n)
        else:
            self.hi = n if self.hi is None else min(self.hi, n)
        if self.hi is None:
            self._next = min(self.max_n, n * 2) if n < self.max_n else None
        elif self.lo == 0:
            self._next = n // 2 if n > 1 else None
        elif self.hi - self.lo <= max(1, math.floor(self.resolution * self.lo)):
            self._next = None
        else:
            self._next = (self.lo + self.hi) // 2

    @property
    def best(self) -> TrialResult | None:
        ok = [t for t in self.trials if t.passed and t.streams == self.lo]
        return ok[-1] if ok else None


def parse_path(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition(":")
    if not rest and name not in PRESETS:
        raise UsageError(f"--path {spec}: unknown preset (known: {', '.join(PRESETS)})")
    overrides = dict(PRESETS.get(name, {}))
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--path {spec}: {item!r} is not KEY=VALUE")
        import yaml

        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def build_config(base: dict[str, Any], overrides: dict[str, Any]) -> Config:
    data = json.loads(json.dumps(base))
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_config(data, "bench path", environ={})


def _load_detector(args: argparse.Namespace, cfg: Config) -> tuple[Path, Detector]:
    from streamd.model.manifest import resolve_manifest

    m = cfg.model
    path = Path(resolve_manifest(args.models_dir, args.model or m.name))
    return path, Detector.load(
        path,
        _providers(args.provider),
        threads=m.threads,
        spin=m.spin,
        runtime=RuntimeOptions.from_config(m),
    )


def _providers(provider: str) -> list[str]:
    return {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}[
        provider
    ]


def _estimate_start(det: Detector, speech: float, hop: float) -> int:
    """A first N from windows/s at batch 1: where the search starts galloping."""
    import numpy as np

    w = np.zeros(det.manifest.max_samples, np.float32)
    det.score_windows([w])  # warm-up
    t = time.perf_counter()
    runs = 0
    while runs < 3 or time.perf_counter() - t < 1.0:
        det.score_windows([w])
        runs += 1
    wps = runs / (time.perf_counter() - t)
    return max(1, int(0.8 * wps * hop / max(speech, 0.05)))


def _row(r: TrialResult) -> str:
    def s(v: float | None) -> str:
        return f"{v:7.2f}" if v is not None else "      -"

    gpu = f" {r.gpu_util:5.0f}%" if r.gpu_util is not None else "      -"
    reuse = f" {100 * r.reused:5.0f}%" if r.reused is not None else "      -"
    return (
        f"{r.path:<10} {r.streams:>6} {'pass' if r.passed else 'FAIL':>5} {s(r.p50_s)} "
        f"{s(r.p99_s)} {r.windows_per_s:9.2f} {100 * r.cpu_per_stream:9.2f}% {r.unscored:>8} "
        f"{r.feed_lag_p99_s * 1000:8.0f} {r.mean_batch:6.2f}{reuse}{gpu} {r.load:6.2f}"
    )


HEADER = (
    f"{'path':<10} {'streams':>6} {'ok':>5} {'p50 s':>7} {'p99 s':>7} {'windows/s':>9} "
    f"{'cpu/strm':>10} {'unscored':>8} {'lag ms':>8} {'batch':>6} {'reuse':>6} {'gpu':>6} "
    f"{'load':>6}"
)


def run(args: argparse.Namespace) -> int:
    if args.speech <= 0 or args.speech > 1:
        raise UsageError("--speech is a share of time: 0 < speech <= 1")
    base: dict[str, Any] = {}
    if args.config:
        import yaml

        with open(args.config, encoding="utf-8") as f:
            base = yaml.safe_load(f) or {}
    base.setdefault("windows", {})["hop_s"] = args.hop
    base.setdefault("sources", {})["max_streams"] = max(args.max_streams, 1)
    specs = [parse_path(s) for s in (args.path or ["today", "new"])]
    pool = speech_pool(args.audio, find_shared(args.shared))
    if not pool:
        print("no speech: pass --audio FILE... or run where ../shared/data is present; skipped")
        return 0
    say = (lambda *a: None) if args.json else print
    t_begin = time.monotonic()
    paths = []
    workers: dict[str, ProcessTrials] = {}
    for name, overrides in specs:
        cfg = build_config(base, overrides)
        mpath, det = _load_detector(args, cfg)
        start = args.start or _estimate_start(det, args.speech, args.hop)
        paths.append((name, cfg, det, Search(start, args.max_streams)))
        if args.processes > 1:
            data = cfg.model_dump(by_alias=True, mode="json")
            providers = _providers(args.provider)
            workers[name] = ProcessTrials(
                args.processes, mpath, providers, data, pool, args.speech, args.trial_s
            )
        say(f"# path {name}: {overrides or 'daemon defaults'} -> {det.name} on {det.provider}")
    tracks = Tracks(pool, 8, max(60.0, args.trial_s + 2), args.speech, seed=1)
    say(
        f"# {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.speech:.0%} speech, "
        f"hop {args.hop} s, bound p99 <= {args.bound} s, {args.trial_s:.0f} s trials"
    )
    say(HEADER)
    stopped = False
    while any(s.next() is not None for *_, s in paths):
        for name, cfg, det, search in paths:
            n = search.next()
            if n is None:
                continue
            if time.monotonic() - t_begin + args.trial_s + args.bound + 2 > args.max_seconds:
                stopped = True
                break
            if name in workers:
                r = workers[name].run(name, n, args.trial_s, args.bound, args.packet_ms)
            else:
                r = asyncio.run(
                    run_trial(name, det, cfg, tracks, n, args.trial_s, args.bound, args.packet_ms)
                )
            search.record(r)
            say(_row(r))
        if stopped:
            break
    for w in workers.values():
        w.close()
    return _report(args, paths, stopped, t_begin)


def _report(args: argparse.Namespace, paths: list[Any], stopped: bool, t_begin: float) -> int:
    summary = []
    for name, _cfg, det, search in paths:
        b = search.best
        summary.append(
            {
                "path": name,
                "streams": search.lo,
                "p50_s": b.p50_s if b else None,
                "p99_s": b.p99_s if b else None,
                "windows_per_s": b.windows_per_s if b else None,
                "cpu_per_stream": b.cpu_per_stream if b else None,
                "gpu_util": b.gpu_util if b else None,
                "first_fail": search.hi,
                "provider": det.provider,
                "model": det.name,
                "trials": [t.as_json() for t in search.trials],
            }
        )
    last = summary[-1]
    ratio = (
        last["streams"] / summary[0]["streams"]
        if len(summary) > 1 and summary[0]["streams"]
        else None
    )
    if args.json:
        out = {k: last[k] for k in ("streams", "p50_s", "p99_s", "windows_per_s", "provider")}
        out |= {
            "path": last["path"],
            "model": last["model"],
            "ratio_vs_first_path": ratio,
            "bound_s": args.bound,
            "speech": args.speech,
            "hop_s": args.hop,
            "cores": os.cpu_count(),
            "load": os.getloadavg()[0],
            "search_complete": not stopped,
            "seconds": round(time.monotonic() - t_begin, 1),
            "paths": summary,
        }
        print(json.dumps(out))
        return 0
    if stopped:
        print(f"# search stopped by --max-seconds {args.max_seconds:.0f}: figures are lower bounds")
    for s in summary[:-1]:
        print(f"# {s['path']}: {s['streams']} streams (first failing N: {s['first_fail']})")
    p99 = f"p99 {last['p99_s']:.2f} s" if last["p99_s"] is not None else "no passing trial"
    vs = (
        f"; {summary[0]['path']} {summary[0]['streams']} in the same run: {ratio:.2f}x"
        if ratio is not None
        else ""
    )
    print(
        f"capacity: {last['streams']} streams ({last['path']} path, {last['model']} on "
        f"{last['provider']}, {p99} <= {args.bound} s, {args.speech:.0%} speech, hop {args.hop} s"
        f"{vs}, load {os.getloadavg()[0]:.1f})"
    )
    return 0
