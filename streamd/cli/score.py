"""``streamd score``: files through the daemon's own path, one line per window, a verdict per file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser(
        "score",
        help="score audio files (WAV/FLAC/OGG, any rate, mono or stereo)",
        description=(
            "Score audio files through the same path the daemon uses: resample to 16 kHz mono once, "
            "VAD, speech windows (windows.length_s, hop_s, min_s), batched scoring, smoothing and "
            "alert hysteresis. Prints one line per window (start, end, p_fake) and a verdict per file. "
            "Exit code 2 when any file cannot be read."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--json", action="store_true", help="JSON lines: one per window, then one per file"
    )
    p.add_argument("--hop", type=float, metavar="S", help="override windows.hop_s")
    p.add_argument("--length", type=float, metavar="S", help="override windows.length_s")
    add_config_args(p)
    p.set_defaults(func=run)


def _fmt_window(ev: dict[str, Any]) -> str:
    w = ev["window"]
    flag = "  ALERT" if ev.get("alerting") else ""
    return f"  {w['start_s']:7.2f}-{w['end_s']:7.2f} s  p_fake={ev['score']:.3f}  smoothed={ev['smoothed']:.3f}{flag}"


def run(args: argparse.Namespace) -> int:
    from streamd.app.daemon import load_detector
    from streamd.offline.score import score_files

    cfg = config_from_args(args)
    if args.hop:
        cfg.windows.hop_s = args.hop
    if args.length:
        cfg.windows.length_s = args.length
    setup_logging(cfg.logging.level if args.log_level else "warning", cfg.logging.format)
    detector = load_detector(cfg)
    reports = score_files(args.files, cfg, detector)
    out = sys.stdout
    failed = False
    for rep in reports:
        if rep.error:
            failed = True
            if args.json:
                out.write(
                    json.dumps({"file": rep.path, "verdict": "error", "error": rep.error}) + "\n"
                )
            else:
                print(f"streamd score: error: {rep.error}", file=sys.stderr)
            continue
        s = rep.summary
        if args.json:
            for ev in rep.windows:
                out.write(
                    json.dumps(
                        {
                            "file": rep.path,
                            **ev["window"],
                            "p_fake": ev["score"],
                            "smoothed": ev["smoothed"],
                            "alerting": ev["alerting"],
                        }
                    )
                    + "\n"
                )
            out.write(
                json.dumps({"file": rep.path, "verdict": rep.verdict, "model": detector.name, **s})
                + "\n"
            )
            continue
        print(f"{rep.path}")
        for ev in rep.windows:
            print(_fmt_window(ev))
        if rep.verdict == "no speech":
            print(f"  verdict: no speech detected in {s.get('duration_s', 0):.1f} s of audio")
        elif rep.verdict == "not enough speech":
            print(
                f"  verdict: not enough speech ({s['speech_s']:.1f} s < windows.min_s {cfg.windows.min_s} s)"
            )
        else:
            state = "alert raised" if s["alert_raised"] else "no alert"
            print(
                f"  verdict: {rep.verdict.upper()} ({state}; {s['windows']} windows, max p_fake {s['max_score']:.3f}, "
                f"mean {s['mean_score']:.3f}, {s['speech_s']:.1f} s speech, model {detector.name})"
            )
    return 2 if failed else 0
