"""``streamd eval``: EER, ROC-AUC and a confusion matrix on labelled audio."""

from __future__ import annotations

import argparse
import json
import math
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
            "Score labelled clips through the daemon's own windowing and report per-window and "
            "per-clip EER and ROC-AUC, the confusion matrix at the manifest threshold, the "
            "threshold that keeps false alarms on real clips under --far and the detection "
            "rate there, per fake system and per source. DATA is a CSV with path,label columns "
            "(label real/bonafide or fake/spoof; optional system, speaker, corpus), e.g. "
            "../shared/data/manifest.csv; or use --real/--fake with folders or CSVs."
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
        type=_rate,
        default=0.01,
        help=(
            "target false-alarm rate on real clips, a fraction between 0 and 1 (default 0.01 = 1%%)"
        ),
    )
    p.add_argument(
        "--short-clips",
        choices=["exclude", "score"],
        default="exclude",
        help=(
            "clips with less speech than one window: exclude (as the "
            "daemon would) or score whole with the model's pad rule"
        ),
    )
    p.add_argument(
        "--limit", type=int, help="use at most N clips per class (evenly spread), for quick runs"
    )
    p.add_argument(
        "--json", action="store_true", help="print the figures and every clip's row as JSON"
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write an HTML report to DIR: DET and ROC curves overall, per source and per "
        "generator, score histograms, the threshold's operating point, every clip (also "
        "clips.csv and report.json). Needs matplotlib (the export extra)",
    )
    p.add_argument(
        "--write-metrics",
        metavar="KEY",
        help="store the figures in the model manifest under metrics.eval.KEY",
    )
    p.add_argument(
        "--set-threshold",
        action="store_true",
        help="with --write-metrics: set the manifest threshold to the one at --far. Refused "
        "when too few real clips back it: at least max(50, 3/--far) (300 at 1%%), so the "
        "threshold rests on 3 or more false alarms",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --set-threshold: set it even from fewer real clips than that",
    )
    p.add_argument(
        "--logo",
        action="store_true",
        help=(
            "also show the leave-one-generator-out figures `streamd "
            "train --logo` stored in the manifest (metrics.logo)"
        ),
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


def _rate(text: str) -> float:
    """A rate in (0, 1): argparse turns the ValueError into a usage error (exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text} is not a rate between 0 and 1 (exclusive): write 1% as 0.01"
        )
    return value


def min_real_clips(far: float) -> int:
    """Real clips needed to set a threshold at ``far``: enough for 3 false alarms, and 50."""
    return max(50, math.ceil(3.0 / far - 1e-9))


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
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch: must be at least 1, got {args.batch}")
    setup_logging(args.log_level or "warning", cfg.logging.format)
    clips = _spread(load_labeled(args.data, args.real, args.fake), args.limit)
    if not any(c.label == "real" for c in clips) or not any(c.label == "fake" for c in clips):
        raise UsageError("eval needs both real and fake clips")
    n_real = sum(c.label == "real" for c in clips)
    need = min_real_clips(args.far)
    if args.set_threshold and not args.write_metrics:
        raise UsageError("--set-threshold needs --write-metrics KEY (where the figures go)")
    if args.set_threshold and n_real < need and not args.force:
        raise UsageError(
            f"--set-threshold: {n_real} real clips are too few to set a threshold at "
            f"{args.far:.2%} false alarms (it would rest on {n_real * args.far:.1f} false "
            f"alarms); use at least {need} real clips, or --force"
        )
    det = load_detector(cfg)
    results = run_eval(
        clips,
        cfg,
        det,
        args.telephony,
        args.short_clips,
        show_progress=sys.stderr.isatty(),
        batch=args.batch,
    )
    summary = summarize(results, det.manifest.threshold, args.far)
    condition = f"G.711 {args.telephony}" if args.telephony else "clean"
    logo = {"logo": det.manifest.metrics.get("logo")} if args.logo else {}
    threshold = det.manifest.threshold
    title = f"model {det.name} ({det.manifest.family}, {det.provider}), condition: {condition}"
    if args.report:
        from streamd.offline.report import write_report

        paths = write_report(
            args.report, results, summary, title=title, threshold=threshold, far=args.far
        )
        print(f"wrote {paths['html']} (+ PNGs, clips.csv, report.json)", file=sys.stderr)
    if args.json:
        from streamd.offline.report import clip_rows

        body = {"model": det.name, "condition": condition, **summary, **logo}
        print(json.dumps({**body, "per_clip": clip_rows(results, threshold)}, indent=1))
    else:
        print(format_report(summary, title))
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
        scored_real = summary["clip"].get("n_real", 0)
        if args.set_threshold and scored_real < need and not args.force:
            print(
                f"streamd eval: threshold NOT set: only {scored_real} real clips were scored "
                f"(need {need}; --force to set it anyway)",
                file=sys.stderr,
            )
        elif args.set_threshold and summary["clip"].get("at_far"):
            m.threshold = min(1.0, summary["clip"]["at_far"]["threshold"])
        path = det.path.parent / f"{m.name}.yaml"
        write_manifest(m, path)
        print(f"wrote metrics.eval.{args.write_metrics} to {path}")
    return 0
