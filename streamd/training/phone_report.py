"""Figures for the model card from held-out window scores: clip EER/AUC, per-call false alarms
and detection (with the smoother), detection delay, per source and per generator.

Clip score = mean window p_fake (as ``streamd eval``); a call alerts when the smoother raises.
Delay = seconds of speech to the first alert: 4 s for the first window, +1 s per window after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamd.training.phone_data import Call
from streamd.training.phone_head import Windows, clip_metrics, first_alert

FIRST_WINDOW_S, HOP_S = 4.0, 1.0


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or v != v else round(float(v), nd)


def per_call(
    w: Windows, p: np.ndarray, thresholds: dict[str, float] | float, calls: Sequence[Call]
) -> list[dict[str, Any]]:
    """One row per call with held-out scores: label, source, system, clip score, alert, delay."""
    rows = []
    for c, ix in w.calls_in(~np.isnan(p)).items():
        call = calls[c]
        thr = thresholds if isinstance(thresholds, float) else thresholds[str(w.group[ix[0]])]
        k = first_alert(p[ix], thr)
        rows.append(
            {
                "label": call.label,
                "source": call.source,
                "system": call.system,
                "score": float(p[ix].mean()),
                "alert": k is not None,
                "delay_s": FIRST_WINDOW_S + HOP_S * k if k is not None else None,
                "windows": len(ix),
            }
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    y = np.array([r["label"] == "fake" for r in rows], dtype=int)
    s = np.array([r["score"] for r in rows])
    a = np.array([r["alert"] for r in rows])
    eer, auc = clip_metrics(s, y)
    delays = [r["delay_s"] for r in rows if r["label"] == "fake" and r["alert"]]
    return {
        "real_calls": int((y == 0).sum()),
        "fake_calls": int(y.sum()),
        "clip_eer": _r(eer),
        "auc": _r(auc),
        "call_false_alarm": _r(a[y == 0].mean()) if (y == 0).any() else None,
        "call_detection": _r(a[y == 1].mean()) if y.any() else None,
        "median_delay_s": _r(float(np.median(delays)), 1) if delays else None,
    }


def by(rows: list[dict[str, Any]], key: str, with_real: bool = False) -> dict[str, dict[str, Any]]:
    """Summaries per value of ``key``; ``with_real`` adds every real call to each fake group
    (per-generator EER: that generator's fakes against all held-out real calls)."""
    out = {}
    real = [r for r in rows if r["label"] == "real"]
    for v in sorted({r[key] for r in rows}):
        grp = [r for r in rows if r[key] == v]
        if with_real:
            if all(r["label"] == "real" for r in grp):
                continue
            grp = [r for r in grp if r["label"] == "fake"] + real
        out[v] = summarize(grp)
    return out


def loso_figures(
    w: Windows,
    p: np.ndarray,
    fold_thresholds: dict[str, float],
    calls: Sequence[Call],
    shipped: float,
    data: str = "../shared/data + debian-tts",
) -> dict[str, Any]:
    """Pooled and per-source figures at each fold's own threshold, plus false alarms per real
    source and detection at the shipped threshold (scores still held-out). ``data`` names what
    the sources are, for the protocol line of the model card."""
    rows = per_call(w, p, fold_thresholds, calls)
    at_shipped = per_call(w, p, float(shipped), calls)
    ship_src = by(at_shipped, "source")
    return {
        "protocol": f"leave-one-source-out over {data}, 8 kHz G.711 mu-law, "
        "daemon windows (VAD, 4 s, hop 1 s), smoother ema 0.5 raise_after 2; "
        "fold thresholds from inner source folds of the training sources",
        "loso": summarize(rows),
        "loso_per_source": by(rows, "source"),
        "loso_per_generator": by(rows, "system", with_real=True),
        "shipped_threshold": _r(shipped, 6),
        "at_shipped_threshold": summarize(at_shipped),
        "call_false_alarm_per_real_source_at_shipped": {
            k: v["call_false_alarm"] for k, v in ship_src.items() if v["real_calls"]
        },
    }


def logo_figures(
    w: Windows,
    calls: Sequence[Call],
    fit: Any,
    loso_p: np.ndarray,
    threshold: float,
    min_calls: int = 3,
) -> dict[str, Any]:
    """Leave-one-generator-out: for each fake system, a head trained without any of its clips
    scores them; they are ranked against the real calls' leave-one-source-out scores (so no
    score here comes from a head that saw the clip's generator or source) and counted alerting
    at ``threshold``."""
    from streamd.training.phone_head import sigmoid

    systems = np.array([calls[c].system if calls[c].label == "fake" else "" for c in w.call])
    real_rows = [r for r in per_call(w, loso_p, float(threshold), calls) if r["label"] == "real"]
    out: dict[str, Any] = {}
    for g in sorted(set(systems.tolist()) - {""}):
        te = systems == g
        if len(set(w.call[te].tolist())) < min_calls:
            continue
        p = np.full(len(w.y), np.nan)
        p[te] = sigmoid(fit(*w.train_set(~te)).score(w.x[te]))
        fake_rows = [r for r in per_call(w, p, float(threshold), calls)]
        out[g] = summarize(fake_rows + real_rows)
    dets = [v["call_detection"] for v in out.values() if v["call_detection"] is not None]
    eers = [v["clip_eer"] for v in out.values() if v["clip_eer"] is not None]
    return {
        "per_generator": out,
        "generators": len(out),
        "mean_clip_eer": _r(float(np.mean(eers))) if eers else None,
        "median_clip_eer": _r(float(np.median(eers))) if eers else None,
        "mean_call_detection": _r(float(np.mean(dets))) if dets else None,
    }
