"""The three-model tables of docs/builtin-detector.md from the research cache.

  final_eval.py --no-tts --aasistl --markdown tables.md   # the doc's tables (288 calls)
  final_eval.py                                            # with the Debian TTS calls as a source

Every score is held out: the built-in head (ASVspoof 5 AASIST readout + logistic regression) per
leave-one-source-out fold, thresholds from inner folds of the training sources; the published
models as they are (fold thresholds from the other sources' real calls, and their own 0.5).
Writes OUT/final-<per><flags>.json (and --markdown FILE).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from windows import add_paths, calls, tts_calls

from streamd.training.phone_data import Call
from streamd.training.phone_embed import load_shards, select_calls
from streamd.training.phone_head import (
    Windows,
    ema_alert_stat,
    fit_logistic,
    leave_one_group_out,
    sigmoid,
    threshold_for_call_rate,
    threshold_from_scores,
)
from streamd.training.phone_report import logo_figures, loso_figures

Data = tuple[Windows, dict[str, np.ndarray], list[Call]]
NAMES = {
    "builtin": "built-in",
    "asv5_raw": "ASVspoof5 AASIST (raw)",
    "aasistl_raw": "AASIST-L (published)",
}


def build(a: argparse.Namespace, prefix: str = "") -> Data:
    """prefix '' = the ASVspoof 5 cache; 'aasist-l-on-' = AASIST-L rescored on the same windows.
    The recipe's call selection (first 250 of the seeded order + each source's first PER)."""
    cs = calls(a.shared)
    d = load_shards(a.cache / f"{prefix}asv5-ulaw", per_call=6)
    if not len(d["call"]):
        raise SystemExit(f"no shards in {a.cache / f'{prefix}asv5-ulaw'}")
    keep = np.isin(d["call"], select_calls(cs, a.per, 0, 250))
    cols = {k: v[keep] for k, v in d.items()}
    if not a.no_tts:
        t = dict(load_shards(a.cache / f"{prefix}asv5-ulaw-tts", per_call=2))
        t["call"] = t["call"] + len(cs)
        cols = {k: np.concatenate([cols[k], t[k]]) for k in cols}
        cs = cs + tts_calls(a.cache)
    w = Windows(
        cols["emb"].astype(np.float64),
        cols["call"],
        np.array([cs[c].is_fake for c in cols["call"]]),
        np.array([cs[c].source for c in cols["call"]]),
    )
    return w, cols, cs


def published(
    data: Data, subset: np.ndarray | None, eval_no_tts: bool
) -> tuple[dict[str, Any], np.ndarray]:
    w, cols, cs = data
    z = cols["logit"].astype(np.float64)
    p = sigmoid(z[:, 0] - z[:, 1])  # softmax[0] = spoof
    if subset is not None:
        p[~np.isin(w.call, subset)] = np.nan
    if eval_no_tts:
        p[w.group == "debian-tts"] = np.nan
    thr = {g: threshold_from_scores(w, p, w.group != g) for g in sorted(set(w.group.tolist()))}
    return loso_figures(w, p, thr, cs, shipped=0.5), p


def built_in(
    data: Data, c: float, subset: np.ndarray | None, eval_no_tts: bool
) -> tuple[dict[str, Any], np.ndarray]:
    w, _, cs = data

    def fit(x: np.ndarray, y: np.ndarray) -> Any:
        return fit_logistic(x, y, c)

    p, thr = leave_one_group_out(w, fit)
    if eval_no_tts:
        p[w.group == "debian-tts"] = np.nan
    ok = ~np.isnan(p)
    stats = [ema_alert_stat(p[ix]) for ix in w.calls_in(ok).values() if w.y[ix[0]] == 0]
    shipped = threshold_for_call_rate(stats)
    logo = logo_figures(w, cs, fit, p, shipped)
    if subset is not None:
        p[~np.isin(w.call, subset)] = np.nan
    f = loso_figures(w, p, thr, cs, shipped=shipped)
    f["logo"] = logo
    return f, p


def pct(v: float | None) -> str:
    return "–" if v is None or v != v else f"{100 * v:.1f}%"


def markdown(out: dict[str, Any]) -> str:
    """The doc's tables: pooled, per source, per generator (+ LOGO), real calls per source."""
    ks = [k for k in NAMES if k in out]
    b = out["builtin"]
    lines = [
        "| model | clip EER | AUC | real calls alerting (fold thr.) | fake calls alerting "
        "(fold thr.) | median delay | threshold | real alerting | fake alerting |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in ks:
        lo, s = out[k]["loso"], out[k]["at_shipped_threshold"]
        lines.append(
            f"| {NAMES[k]} | {pct(lo['clip_eer'])} | {lo['auc']:.2f} | "
            f"{pct(lo['call_false_alarm'])} | {pct(lo['call_detection'])} | "
            f"{lo['median_delay_s'] or '–'} s | {out[k]['shipped_threshold']:.3f} | "
            f"{pct(s['call_false_alarm'])} | {pct(s['call_detection'])} |"
        )
    head = " | ".join(f"{NAMES[k]}: EER / AUC / real alerting / fake alerting" for k in ks)
    lines += ["", f"| source | real | fake | {head} |", "|---|---|---|" + "---|" * len(ks)]
    for src, v0 in sorted(b["loso_per_source"].items()):
        cells = []
        for k in ks:
            v = out[k]["loso_per_source"].get(src, {})
            auc = "–" if v.get("auc") is None else f"{v['auc']:.2f}"
            cells.append(
                f"{pct(v.get('clip_eer'))} / {auc} / {pct(v.get('call_false_alarm'))}"
                f" / {pct(v.get('call_detection'))}"
            )
        lines.append(
            f"| {src} | {v0['real_calls']} | {v0['fake_calls']} | " + " | ".join(cells) + " |"
        )
    head = " | ".join(f"{NAMES[k]}: EER / fake alerting" for k in ks)
    lines += [
        "",
        f"| generator | fake calls | {head} | built-in LOGO: EER / fake alerting |",
        "|---|---|" + "---|" * (len(ks) + 1),
    ]
    logo = b.get("logo", {}).get("per_generator", {})
    for g, v0 in sorted(b["loso_per_generator"].items()):
        cells = []
        for k in ks:
            v = out[k]["loso_per_generator"].get(g, {})
            cells.append(f"{pct(v.get('clip_eer'))} / {pct(v.get('call_detection'))}")
        lg = logo.get(g)
        cells.append(
            f"{pct(lg['clip_eer'])} / {pct(lg['call_detection'])}" if lg else "– (< 3 calls)"
        )
        lines.append(f"| {g} | {v0['fake_calls']} | " + " | ".join(cells) + " |")
    head = " | ".join(f"{NAMES[k]} alerting at its threshold" for k in ks)
    lines += ["", f"| real source | calls | {head} |", "|---|---|" + "---|" * len(ks)]
    for src in b["call_false_alarm_per_real_source_at_shipped"]:
        n = b["loso_per_source"][src]["real_calls"]
        fa = [pct(out[k]["call_false_alarm_per_real_source_at_shipped"].get(src)) for k in ks]
        lines.append(f"| {src} | {n} | " + " | ".join(fa) + " |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--per", type=int, default=12, help="calls per source on top of the first 250")
    ap.add_argument("--aasistl", action="store_true", help="add AASIST-L (rescore.py) on its calls")
    ap.add_argument("--no-tts", action="store_true", help="leave the Debian TTS calls out")
    ap.add_argument("--eval-no-tts", action="store_true", help="train with TTS, score without")
    ap.add_argument("--C", type=float, default=0.01, help="head L2 strength (default: %(default)s)")
    ap.add_argument("--markdown", type=Path, help="write the doc's tables to this file")
    ap.add_argument("--out", type=Path, help="folder for the result JSON (default: --cache)")
    add_paths(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    a = parser().parse_args(argv)
    out: dict[str, Any] = {}
    subset = None
    if a.aasistl:  # calls AASIST-L was run on: every model is reported on these only
        dl = build(a, "aasist-l-on-")
        subset = np.array(sorted(set(dl[0].call.tolist())))
        print("AASIST-L scored", len(subset), "calls;", len(dl[0].y), "windows")
    d = build(a)
    w = d[0]
    print(len(w.y), "windows,", len(set(w.call.tolist())), "calls,", int(w.y.sum()), "fake windows")
    out["builtin"], _ = built_in(d, a.C, subset, a.eval_no_tts)
    out["asv5_raw"], _ = published(d, subset, a.eval_no_tts)
    if a.aasistl:
        out["aasistl_raw"], _ = published(dl, None, a.eval_no_tts)
    for n, f in out.items():
        lo, s = f["loso"], f["at_shipped_threshold"]
        print(
            f"{n}: LOSO clip EER {pct(lo['clip_eer'])} AUC {lo['auc']}; fold-threshold per-call "
            f"FA {pct(lo['call_false_alarm'])} det {pct(lo['call_detection'])} median delay "
            f"{lo['median_delay_s']} s; shipped/0.5 threshold {f['shipped_threshold']}: "
            f"FA {pct(s['call_false_alarm'])} det {pct(s['call_detection'])}"
        )
    lg = out["builtin"]["logo"]
    print(
        f"builtin LOGO: {lg['generators']} generators with >= 3 calls, mean clip EER "
        f"{pct(lg['mean_clip_eer'])}, median {pct(lg['median_clip_eer'])}, mean fake calls "
        f"alerting {pct(lg['mean_call_detection'])}"
    )
    tts = out["builtin"]["loso_per_source"].get("debian-tts")
    if tts:
        print(f"builtin on held-out debian-tts: fake calls alerting {pct(tts['call_detection'])}")
    flags = f"--C={a.C}" if a.C != 0.01 else ""
    flags += "".join(
        f"--{k}" for k in ("no-tts", "eval-no-tts", "aasistl") if getattr(a, k.replace("-", "_"))
    )
    dest = a.out or a.cache
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"final-{a.per}{flags}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    print("wrote", path)
    if a.markdown:
        a.markdown.write_text(markdown(out))
        print("wrote", a.markdown)


if __name__ == "__main__":
    main()
