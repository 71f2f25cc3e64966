"""``streamd eval``: EER, ROC-AUC and a confusion matrix on labelled audio."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="EER, ROC-AUC and confusion matrix on labelled clips",
        description=(
            "Score labelled clips through the daemon's own windowing and report per-window and per-clip "
            "EER and ROC-AUC, the confusion matrix at the manifest threshold, the threshold that keeps "
            "false alarms on real clips under --far and the detection rate there, per fake system and per "
            "source. DATA is a CSV with path,label columns (label real/bonafide or fake/spoof; optional "
            "system, speaker, corpus), e.g. ../shared/data/manifest.csv; or use --real/--fake with folders or CSVs."
        ),
    )
    p.add_argument("data", nargs="*", metavar="DATA", help="CSV with path,label columns")
    p.add_argument(
        "--real", action="append", metavar="DIR_OR_CSV", help="clips that are real (repeatable)"
    )
    p.add_argument(
        "--fake", action="append", metavar="DIR_OR_CSV", help="clips that are fake (repeatable)"
    )
    p.add_argument(
        "--telephony",
        nargs="?",
        const="ulaw",
        choices=["ulaw", "alaw"],
        help="pass audio through 8 kHz G.711 and back first",
    )
    p.add_argument(
        "--far",
        type=float,
        default=0.01,
        help="target false-alarm rate on real clips (default 0.01)",
    )
    p.add_argument(
        "--short-clips",
        choices=["exclude", "score"],
        default="exclude",
        help="clips with less speech than one window: exclude (as the daemon would) or score whole with the model's pad rule",
    )
    p.add_argument(
        "--limit", type=int, help="use at most N clips per class (evenly spread), for quick runs"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--write-metrics",
        metavar="KEY",
        help="store the figures in the model manifest under metrics.eval.KEY",
    )
    p.add_argument(
        "--set-threshold",
        action="store_true",
        help="with --write-metrics: set the manifest threshold to the one at --far",
    )
    p.add_argument(
        "--logo",
        action="store_true",
        help="also show the leave-one-generator-out figures `streamd train --logo` stored in the manifest (metrics.logo)",
    )
    add_config_args(p)
    p.set_defaults(func=run)


def _spread(clips: list[Any], limit: int | None) -> list[Any]:
    if not limit:
        return clips
    out = []
    for label in ("real", "fake"):
        rows = [c for c in clips if c.label == label]
        step = max(1, len(rows) // limit)
        out += rows[::step][:limit]
    return out


def run(args: argparse.Namespace) -> int:
    from streamd.app.daemon import load_detector
    from streamd.errors import UsageError
    from streamd.model.manifest import load_manifest, write_manifest
    from streamd.offline.datasets import load_labeled
    from streamd.offline.eval import format_report, run_eval, summarize

    cfg = config_from_args(args)
    setup_logging(args.log_level or "warning", cfg.logging.format)
    clips = _spread(load_labeled(args.data, args.real, args.fake), args.limit)
    if not any(c.label == "real" for c in clips) or not any(c.label == "fake" for c in clips):
        raise UsageError("eval needs both real and fake clips")
    det = load_detector(cfg)
    results = run_eval(
        clips, cfg, det, args.telephony, args.short_clips, show_progress=sys.stderr.isatty()
    )
    summary = summarize(results, det.manifest.threshold, args.far)
    condition = f"G.711 {args.telephony}" if args.telephony else "clean"
    logo = {"logo": det.manifest.metrics.get("logo")} if args.logo else {}
    if args.json:
        print(json.dumps({"model": det.name, "condition": condition, **summary, **logo}, indent=1))
    else:
        print(
            format_report(
                summary,
                f"model {det.name} ({det.manifest.family}, {det.provider}), condition: {condition}",
            )
        )
        if args.logo:
            from streamd.training.report import format_logo

            print(format_logo(det.manifest.metrics))
    if args.write_metrics:
        m = (
            load_manifest(det.path.with_suffix(".yaml"))
            if det.path.with_suffix(".yaml").exists()
            else det.manifest
        )
        record = {
            "date": date.today().isoformat(),
            "data": [*args.data, *(args.real or []), *(args.fake or [])],
            "condition": condition,
            "short_clips": args.short_clips,
            "window": {k: summary["window"].get(k) for k in ("n", "eer", "auc")},
            "clip": {
                k: summary["clip"].get(k) for k in ("n", "n_real", "n_fake", "eer", "auc", "at_far")
            },
        }
        m.metrics.setdefault("eval", {})[args.write_metrics] = record
        if args.set_threshold and summary["clip"].get("at_far"):
            m.threshold = min(1.0, summary["clip"]["at_far"]["threshold"])
        path = det.path.parent / f"{m.name}.yaml"
        write_manifest(m, path)
        print(f"wrote metrics.eval.{args.write_metrics} to {path}")
    return 0
