"""``streamd eval``: score labelled clips through the daemon's own windowing, then measure.

Each clip is played as one stream (VAD, windows, scorer), optionally through an 8 kHz G.711 round
trip first, as a phone call would carry it. Window scores get their clip's label; a clip's score
is the mean of its windows. Clips too short for one window are excluded and counted, or scored
whole with the model's pad rule (``--short-clips score``, as the AASIST authors' evaluation does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamd.config import Config
from streamd.model.session import Detector
from streamd.offline.datasets import LabeledClip
from streamd.offline.metrics import (
    confusion_at,
    equal_error_rate,
    roc_auc,
    threshold_at_false_alarm,
)
from streamd.offline.score import FileReport, score_clips_async
from streamd.pipeline.audio import load_audio, read_audio


@dataclass
class ClipResult:
    clip: LabeledClip
    windows: list[float] = field(default_factory=list)
    whole: float | None = None  # scored whole because it was shorter than one window
    error: str | None = None

    @property
    def score(self) -> float | None:
        if self.windows:
            return float(np.mean(self.windows))
        return self.whole


def _load(clip: LabeledClip, telephony: str | None) -> tuple[np.ndarray, int]:
    if telephony:
        from streamd.offline.channel import g711_roundtrip

        return g711_roundtrip(load_audio(clip.path), telephony), 16000  # type: ignore[arg-type]
    data, rate = read_audio(clip.path)
    return data, rate


def run_eval(
    clips: list[LabeledClip],
    config: Config,
    detector: Detector,
    telephony: str | None = None,
    short_clips: str = "exclude",
    show_progress: bool = True,
    batch: int | None = None,
) -> list[ClipResult]:
    """Score every clip; each is decoded only when its turn comes, so memory stays flat with the
    number of clips (``concurrency`` clips in flight, their windows bounded by the player)."""
    results = [ClipResult(c) for c in clips]

    def loader(r: ClipResult) -> Callable[[], tuple[np.ndarray, int]]:
        return lambda: _load(r.clip, telephony)

    lazy = [(str(i), loader(r)) for i, r in enumerate(results)]

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("clips", total=len(lazy))

        def tick(rep: FileReport) -> None:
            r = results[int(rep.path)]
            if rep.error:
                r.error = rep.error
            else:
                r.windows = [float(ev["score"]) for ev in rep.windows]
            rep.windows.clear()  # the scores are kept above; the events are not needed
            bar.advance(task)

        asyncio.run(score_clips_async(lazy, config, detector, progress=tick, batch=batch))
    if short_clips == "score":
        for r in results:
            if r.error is None and not r.windows:
                r.whole = _score_whole(r.clip, telephony, detector)
    return results


def _score_whole(clip: LabeledClip, telephony: str | None, detector: Detector) -> float:
    """A clip shorter than one window, scored whole with the model's pad rule."""
    data, rate = _load(clip, telephony)
    audio = data if rate == 16000 and data.ndim == 1 else None
    if audio is None:
        from streamd.pipeline.audio import AudioConverter

        conv = AudioConverter(rate)
        audio = np.concatenate([conv.convert(data), conv.flush()])
    return float(detector.score_windows([audio])[0][0])


def _metrics(
    scores: list[float], labels: list[int], threshold: float, far: float
) -> dict[str, Any]:
    s, y = np.asarray(scores), np.asarray(labels)
    out: dict[str, Any] = {
        "n": len(s),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
    }
    if out["n_real"] and out["n_fake"]:
        eer = equal_error_rate(s, y)
        op = threshold_at_false_alarm(s, y, far)
        c = confusion_at(s, y, threshold)
        out.update(
            eer=eer.eer,
            eer_threshold=eer.threshold,
            auc=roc_auc(s, y),
            confusion={
                "threshold": threshold,
                "tn": c.tn,
                "fp": c.fp,
                "fn": c.fn,
                "tp": c.tp,
                "false_alarm_rate": c.false_alarm_rate,
                "detection_rate": c.detection_rate,
            },
            at_far={
                "target": far,
                "threshold": op.threshold,
                "false_alarm_rate": op.false_alarm_rate,
                "detection_rate": op.detection_rate,
            },
        )
    return out


def summarize(results: list[ClipResult], threshold: float, far: float = 0.01) -> dict[str, Any]:
    scored = [r for r in results if r.score is not None]
    win_s = [w for r in scored for w in r.windows]
    win_y = [r.clip.is_fake for r in scored for _ in r.windows]
    clip_s = [r.score for r in scored if r.score is not None]
    clip_y = [r.clip.is_fake for r in scored]
    real = [(r.score, 0) for r in scored if r.clip.label == "real"]
    per_system: dict[str, Any] = {}
    for system in sorted({r.clip.system for r in scored if r.clip.label == "fake"}):
        fakes = [(r.score, 1) for r in scored if r.clip.label == "fake" and r.clip.system == system]
        pairs = real + fakes
        per_system[system] = _metrics([p[0] for p in pairs], [p[1] for p in pairs], threshold, far)  # type: ignore[misc]
    per_source: dict[str, Any] = {}
    for source in sorted({r.clip.source for r in scored}):
        rows = [r for r in scored if r.clip.source == source]
        scores = np.array([r.score for r in rows], dtype=float)
        per_source[source] = {
            "n_real": sum(r.clip.label == "real" for r in rows),
            "n_fake": sum(r.clip.label == "fake" for r in rows),
            "mean_p_fake": float(scores.mean()),
            "flagged": float((scores >= threshold).mean()),
            **{
                k: v
                for k, v in _metrics(
                    list(scores), [r.clip.is_fake for r in rows], threshold, far
                ).items()
                if k in ("eer", "auc")
            },
        }
    return {
        "clips": len(results),
        "errors": sum(r.error is not None for r in results),
        "excluded_short": sum(r.error is None and r.score is None for r in results),
        "scored_whole": sum(r.whole is not None for r in results),
        "window": _metrics(win_s, win_y, threshold, far),
        "clip": _metrics(clip_s, clip_y, threshold, far),
        "per_system": per_system,
        "per_source": per_source,
    }


def _pct(v: float | None) -> str:
    return "   n/a" if v is None else f"{100 * v:5.1f}%"


def format_report(summary: dict[str, Any], title: str) -> str:
    lines = [
        title,
        f"clips: {summary['clips']} ({summary['errors']} unreadable, {summary['excluded_short']} "
        f"too short for a window and excluded, {summary['scored_whole']} scored whole)",
    ]
    lines.append(f"{'':32} {'n':>6} {'real':>6} {'fake':>6} {'EER':>7} {'AUC':>7}")
    for level in ("window", "clip"):
        m = summary[level]
        lines.append(
            f"{'pooled per ' + level:32} {m['n']:6d} {m['n_real']:6d} "
            f"{m['n_fake']:6d} {_pct(m.get('eer')):>7} {m.get('auc', float('nan')):7.3f}"
        )
    c = summary["clip"].get("confusion")
    if c:
        lines.append(
            f"clips at threshold {c['threshold']:.3f}: real passed {c['tn']}, real flagged "
            f"{c['fp']} (false alarms {_pct(c['false_alarm_rate'])}), fake flagged "
            f"{c['tp']}, fake missed {c['fn']} (detection {_pct(c['detection_rate'])})"
        )
        a = summary["clip"]["at_far"]
        lines.append(
            f"for <= {_pct(a['target']).strip()} false alarms on real clips: "
            f"threshold {a['threshold']:.4f}, detection rate "
            f"{_pct(a['detection_rate'])} (false alarms {_pct(a['false_alarm_rate'])})"
        )
    if summary["per_system"]:
        lines.append("per fake system (its clips vs all real clips):")
        for name, m in summary["per_system"].items():
            lines.append(
                f"  {name[:60]:60} fake {m['n_fake']:4d}  EER "
                f"{_pct(m.get('eer'))}  AUC {m.get('auc', float('nan')):.3f}"
            )
    lines.append("per source:")
    for name, m in summary["per_source"].items():
        extra = f"  EER {_pct(m.get('eer'))}" if "eer" in m else ""
        lines.append(
            f"  {name[:48]:48} real {m['n_real']:4d} fake {m['n_fake']:4d}  mean "
            f"p_fake {m['mean_p_fake']:.3f}  flagged {_pct(m['flagged'])}{extra}"
        )
    return "\n".join(lines)
