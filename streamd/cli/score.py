"""``streamd score``: files through the daemon's own path, one line per window, a verdict per file.

The verdict says which rule made it: the alert thresholds and the hysteresis (how many windows in a
row), so a one-window clip at p_fake 1.000 reads as "not enough windows to raise", not as REAL.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.offline.score import FileReport


def register(sub: Any) -> None:
    p = sub.add_parser(
        "score",
        help="score audio files (WAV/FLAC/OGG, any rate, mono or stereo)",
        description=(
            "Score audio files through the same path the daemon uses: resample to 16 kHz mono, "
            "VAD, speech windows (windows.length_s, hop_s, min_s), batched scoring, smoothing and "
            "alert hysteresis. Files are decoded in blocks, so memory does not grow with their "
            "length. Prints one line per window (start, end, p_fake, smoothed) and a verdict per "
            "file with the rule applied: FAKE when an alert was raised (the smoothed score stayed "
            "at or above the raise threshold for alerts.raise_after windows in a row), else REAL. "
            "Exit code 2 when any file cannot be read."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--json", action="store_true", help="JSON lines: one per window, then one per file"
    )
    p.add_argument("--hop", type=float, metavar="S", help="override windows.hop_s (> 0)")
    p.add_argument(
        "--length",
        type=float,
        metavar="S",
        help="override windows.length_s (> 0, at least windows.min_s)",
    )
    p.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="windows per model run (default: model.batch_max on a GPU, at most 4 on a CPU, "
        "where big batches cost memory and gain little speed)",
    )
    add_config_args(p)
    p.set_defaults(func=run)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class AlertRule:
    """The hysteresis a verdict was reached with, as the daemon applies it."""

    raise_: float
    clear: float
    method: str
    alpha: float
    n: int
    raise_after: int
    clear_after: int

    @classmethod
    def of(cls, cfg: Config, model_threshold: float) -> AlertRule:
        from streamd.pipeline.hub import alert_thresholds

        raise_, clear = alert_thresholds(cfg, model_threshold)
        a = cfg.alerts
        return cls(raise_, clear, a.method, a.alpha, a.n, a.raise_after, a.clear_after)

    @property
    def smoothing(self) -> str:
        if self.method == "ema":
            return f"EMA, alpha {self.alpha:g}"
        return f"mean of the last {plural(self.n, 'window')}"

    def describe(self) -> str:
        return (
            f"alert when the smoothed score ({self.smoothing}) is >= {self.raise_:.3f} for "
            f"{plural(self.raise_after, 'window')} in a row; it clears at <= {self.clear:.3f} for "
            f"{plural(self.clear_after, 'window')}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "raise": self.raise_,
            "clear": self.clear,
            "method": self.method,
            "alpha": self.alpha,
            "n": self.n,
            "raise_after": self.raise_after,
            "clear_after": self.clear_after,
        }


def verdict_text(rep: FileReport, rule: AlertRule, min_s: float, model: str) -> str:
    """The verdict line of one file, with why."""
    s = rep.summary
    if rep.verdict == "no speech":
        return f"verdict: no speech detected in {s.get('duration_s', 0):.1f} s of audio"
    if rep.verdict == "not enough speech":
        return f"verdict: not enough speech ({s['speech_s']:.1f} s < windows.min_s {min_s:g} s)"
    n = int(s["windows"])
    facts = (
        f"{plural(n, 'window')}, max p_fake {s['max_score']:.3f}, mean {s['mean_score']:.3f}, "
        f"{s['speech_s']:.1f} s speech, model {model}"
    )
    if s.get("alert_raised"):
        return f"verdict: FAKE (alert raised; {facts})"
    if n < rule.raise_after:
        why = (
            f"no alert: {plural(n, 'window')} scored, fewer than the {rule.raise_after} in a row "
            f"an alert needs"
        )
        if s["max_score"] is not None and s["max_score"] >= rule.raise_:
            why += f", although p_fake reached {s['max_score']:.3f}"
        return f"verdict: REAL ({why}; {facts})"
    return f"verdict: REAL (no alert; {facts})"


def _fmt_window(ev: dict[str, Any]) -> str:
    w = ev["window"]
    flag = "  ALERT" if ev.get("alerting") else ""
    return (
        f"  {w['start_s']:7.2f}-{w['end_s']:7.2f} s  "
        f"p_fake={ev['score']:.3f}  smoothed={ev['smoothed']:.3f}{flag}"
    )


def apply_window_overrides(cfg: Config, hop: float | None, length: float | None) -> None:
    """``--hop``/``--length`` checked by the same rules as ``windows`` in the config file."""
    from pydantic import ValidationError

    from streamd.config.sections import WindowsConfig
    from streamd.errors import UsageError

    if hop is None and length is None:
        return
    data = cfg.windows.model_dump()
    if hop is not None:
        data["hop_s"] = hop
    if length is not None:
        data["length_s"] = length
    try:
        cfg.windows = WindowsConfig.model_validate(data)
    except ValidationError as exc:
        flags = {"hop_s": "--hop", "length_s": "--length"}
        msgs = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            where = flags.get(key, "--length" if length is not None else "--hop")
            msgs.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise UsageError("; ".join(msgs)) from None


def run(args: argparse.Namespace) -> int:
    from streamd.app.daemon import load_detector
    from streamd.offline.score import score_files

    cfg = config_from_args(args)
    apply_window_overrides(cfg, args.hop, args.length)
    if args.batch is not None and args.batch < 1:
        from streamd.errors import UsageError

        raise UsageError(f"--batch: must be at least 1, got {args.batch}")
    setup_logging(cfg.logging.level if args.log_level else "warning", cfg.logging.format)
    detector = load_detector(cfg)
    from streamd.pipeline.hub import load_calibration

    calibration = load_calibration(cfg, detector) if cfg.alerts.raise_ is None else None
    threshold = calibration.raise_ if calibration is not None else detector.manifest.threshold
    rule = AlertRule.of(cfg, threshold)
    reports = score_files(args.files, cfg, detector, batch=args.batch)
    out = sys.stdout
    failed = False
    if not args.json:
        print(f"rule: {rule.describe()} (model {detector.name})")
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
        if args.json:
            for ev in rep.windows:
                row = {
                    "file": rep.path,
                    **ev["window"],
                    "p_fake": ev["score"],
                    "smoothed": ev["smoothed"],
                    "alerting": ev["alerting"],
                }
                out.write(json.dumps(row) + "\n")
            line = {
                "file": rep.path,
                "verdict": rep.verdict,
                "model": detector.name,
                "rule": rule.to_json(),
                **rep.summary,
            }
            out.write(json.dumps(line) + "\n")
            continue
        print(f"{rep.path}")
        for ev in rep.windows:
            print(_fmt_window(ev))
        print("  " + verdict_text(rep, rule, cfg.windows.min_s, detector.name))
    return 2 if failed else 0
