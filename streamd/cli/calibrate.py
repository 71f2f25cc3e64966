"""``streamd calibrate``: set the alert threshold from real traffic for a target per-call rate."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args
from streamd.errors import UsageError

DESCRIPTION = """\
Real calls are plentiful where fakes are rare: calibrate on them. Each call's window scores
(from the event store's window.scored events, or from scoring a folder of recordings known to be
real through the daemon's own path) are run through the configured smoother (alerts.method,
alpha/n, raise_after), and the threshold is set so that at most --target of the calls would have
raised an alert. It is written to MODELS_DIR/calibration.yaml, which the daemon reads at start
for the model it was made for (an explicit alerts.raise in the config still wins).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="set the threshold from real traffic for a per-call false-alarm rate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--store",
        nargs="?",
        const="",
        metavar="DB",
        help="event store to read window.scored from (default: store.path of the config)",
    )
    src.add_argument(
        "--real", metavar="DIR_OR_FILE", nargs="+", help="recordings known to be real, scored now"
    )
    p.add_argument(
        "--since", metavar="DURATION", help="store: only the last 7d / 12h / 30m of traffic"
    )
    p.add_argument(
        "--target",
        type=float,
        default=0.01,
        help="share of real calls allowed to alert (default 0.01)",
    )
    p.add_argument(
        "--by", metavar="KEY", help="a threshold per 'source' or per stream label ('label:NAME')"
    )
    p.add_argument(
        "--min-calls",
        type=int,
        default=100,
        help="fewest calls a per-group threshold needs (default 100)",
    )
    p.add_argument(
        "--fakes",
        metavar="CSV",
        help="labelled clips (path,label) to state the detection rate the threshold implies",
    )
    p.add_argument("--dry-run", action="store_true", help="print, do not write calibration.yaml")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_args(p)
    p.set_defaults(func=run)


def _parse_since(v: str) -> datetime:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    try:
        return datetime.now(timezone.utc) - timedelta(**{units[v[-1]]: float(v[:-1])})
    except (KeyError, ValueError):
        raise UsageError(f"--since {v!r}: use a number and d, h, m or s (7d, 12h)") from None


def calls_from_store(path: Path, since: datetime | None, model_sha: str) -> list[dict[str, Any]]:
    """One entry per stream: source, labels, window scores in order (this model's only)."""
    from streamd.events.store import EventStore

    store = EventStore(path, readonly=True)
    calls: dict[str, dict[str, Any]] = {}
    last = 0
    try:
        while True:
            rows = store.read_raw(last, types=["window.scored"], limit=5000)
            if not rows:
                break
            for i, body in rows:
                last = i
                ev = json.loads(body)
                if model_sha and (ev.get("model") or {}).get("sha256") not in ("", None, model_sha):
                    continue
                if since is not None:
                    ts = datetime.fromisoformat(str(ev["ts"]).replace("Z", "+00:00"))
                    if ts < since:
                        continue
                st = ev.get("stream") or {}
                c = calls.setdefault(
                    st.get("stream_id", "?"),
                    {
                        "source": st.get("source", ""),
                        "labels": st.get("labels") or {},
                        "scores": [],
                    },
                )
                c["scores"].append(float(ev["score"]))
    finally:
        store.close()
    return list(calls.values())


def calls_from_files(paths: list[str], cfg: Any, detector: Any) -> list[dict[str, Any]]:
    from streamd.offline.datasets import AUDIO_SUFFIXES
    from streamd.offline.score import score_files

    files: list[str] = []
    for p in map(Path, paths):
        files += (
            sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            if p.is_dir()
            else [str(p)]
        )
    if not files:
        raise UsageError("--real: no audio files found")
    reps = score_files(files, cfg, detector)  # type: ignore[arg-type]
    return [
        {
            "source": "file",
            "labels": {"path": r.path},
            "scores": [float(w["score"]) for w in r.windows],
        }
        for r in reps
        if r.windows
    ]


def run(args: argparse.Namespace) -> int:
    from streamd.app.daemon import load_detector
    from streamd.pipeline.calibration import (
        CALIBRATION_FILE,
        Calibration,
        call_alert_level,
        threshold_for_rate,
    )

    if not 0.0 <= args.target < 1.0:
        raise UsageError("--target must be in [0, 1)")
    if args.by and args.by != "source" and not args.by.startswith("label:"):
        raise UsageError("--by takes 'source' or 'label:NAME'")
    cfg = config_from_args(args)
    setup_logging(args.log_level or "warning", cfg.logging.format)
    detector = load_detector(cfg)
    a = cfg.alerts
    if args.real:
        calls = calls_from_files(args.real, cfg, detector)
    else:
        from streamd.events.store import default_store_path

        path = (
            Path(args.store)
            if args.store
            else Path(cfg.store.path)
            if cfg.store.path
            else default_store_path()
        )
        calls = calls_from_store(
            path, _parse_since(args.since) if args.since else None, detector.manifest.sha256 or ""
        )
    if not calls:
        raise UsageError("no scored windows found to calibrate on")

    def level(scores: list[float]) -> float:
        return call_alert_level(scores, a.method, a.alpha, a.n, a.raise_after)

    levels = [level(c["scores"]) for c in calls]
    thr = threshold_for_rate(levels, args.target)
    cal = Calibration(
        detector.name,
        detector.manifest.sha256 or "",
        thr,
        args.target,
        len(calls),
        group_key=args.by,
    )
    groups: dict[str, list[float]] = defaultdict(list)
    if args.by:
        for c, lv in zip(calls, levels, strict=True):
            g = cal.group_of(c["source"], c["labels"])
            if g is not None:
                groups[g].append(lv)
        cal.by_group = {
            g: threshold_for_rate(v, args.target)
            for g, v in groups.items()
            if len(v) >= args.min_calls
        }
    result = summary(cal, levels, groups)
    if args.fakes:
        result["implied_detection"] = implied_detection(args.fakes, cfg, detector, thr, level)
    if not args.dry_run:
        out = Path(cfg.model.dir) / CALIBRATION_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(cal.to_yaml(), encoding="utf-8")
        result["written"] = str(out.resolve())
    _print(result, args.json)
    return 0


def summary(cal: Any, levels: list[float], groups: dict[str, list[float]]) -> dict[str, Any]:
    from streamd.pipeline.calibration import alert_rate

    n = len(levels)
    out: dict[str, Any] = {
        "model": cal.model,
        "calls": n,
        "threshold": round(cal.raise_, 6),
        "target": cal.target,
        "alerts_per_1000_calls": round(1000 * alert_rate(levels, cal.raise_), 2),
        "short_calls": sum(1 for v in levels if v < 0),
    }
    if n < 1 / max(cal.target, 1e-9):
        out["warning"] = (
            f"{n} calls are too few to resolve a {cal.target:.2%} rate; gather more traffic"
        )
    if cal.by_group:
        out["by_group"] = {
            g: {
                "threshold": round(t, 6),
                "calls": len(groups[g]),
                "alerts_per_1000_calls": round(1000 * alert_rate(groups[g], t), 2),
            }
            for g, t in cal.by_group.items()
        }
    return out


def implied_detection(
    csv_path: str, cfg: Any, detector: Any, thr: float, level: Any
) -> dict[str, Any]:
    """Share of the labelled fakes (through an 8 kHz G.711 channel, as calls) that would alert."""
    import asyncio

    from streamd.offline.channel import g711_roundtrip
    from streamd.offline.datasets import load_labeled
    from streamd.offline.score import score_clips_async
    from streamd.pipeline.audio import load_audio

    clips = [c for c in load_labeled([csv_path]) if c.label == "fake"]
    items = [(str(c.path), g711_roundtrip(load_audio(c.path), "ulaw"), 16000) for c in clips]
    reps = asyncio.run(score_clips_async(items, cfg, detector))
    lv = [level([float(w["score"]) for w in r.windows]) for r in reps if r.windows]
    hit = sum(1 for v in lv if v >= thr)
    return {
        "fake_calls": len(lv),
        "alerting": hit,
        "rate": round(hit / len(lv), 4) if lv else None,
        "channel": "8 kHz G.711 mu-law",
    }


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"model {result['model']}: {result['calls']} real calls "
        f"({result['short_calls']} too short to ever alert)"
    )
    print(
        f"threshold {result['threshold']:.6f} for <= {result['target']:.2%} of calls alerting: "
        f"expected {result['alerts_per_1000_calls']:.1f} alerts per 1,000 real calls"
    )
    for g, v in result.get("by_group", {}).items():
        print(
            f"  {g}: threshold {v['threshold']:.6f} ({v['calls']} "
            f"calls, {v['alerts_per_1000_calls']:.1f} per 1,000)"
        )
    if "implied_detection" in result:
        d = result["implied_detection"]
        print(
            f"implied detection on {d['fake_calls']} labelled fake calls ({d['channel']}): "
            f"{d['alerting']} alert ({(d['rate'] or 0):.1%})"
        )
    if "warning" in result:
        print(f"warning: {result['warning']}", file=sys.stderr)
    if "written" in result:
        print(f"wrote {result['written']} (the daemon reads it at start)")
