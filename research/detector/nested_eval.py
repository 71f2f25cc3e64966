"""Leave-one-source-out with every choice made inside the fold (nested), on ALL cached calls.

  nested_eval.py                                   # ASVspoof 5 readout, C chosen per fold
  nested_eval.py --models asv5,rawgat,aasist-l --subset   # readout fusion, on the calls all scored
  nested_eval.py --aug asv5-codecs                 # + training windows of the same calls through
                                                   #   random call channels (scored on G.711 only)

Why nested: the first figures chose the head's C and the recipe's options on the same held-out
sources they reported. Here each outer fold (one source held out) picks C from --grid by inner
5-fold source cross-validation on its training sources only (clip EER of out-of-fold scores),
then fits on all its training sources and sets its alert threshold from the inner out-of-fold
scores of its real calls (<= 1% of calls alerting through the smoother). Nothing of the held-out
source is seen by any choice. The shipped setting is the C chosen by the same inner procedure on
all sources (printed as "selected on all sources").

Windows are deduplicated by (call, end): top-up shards overlap the full run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from windows import add_paths, calls

from streamd.training.phone_data import Call
from streamd.training.phone_head import (
    Windows,
    clip_metrics,
    fit_logistic,
    sigmoid,
    threshold_from_scores,
)
from streamd.training.phone_report import logo_figures, loso_figures

CACHE_OF = {
    "asv5": "asv5-ulaw",
    "aasist-l": "aasist-l-on-asv5-ulaw",
    "aasist": "aasist-on-asv5-ulaw",
    "rawgat": "rawgat-on-asv5-ulaw",
}


def load_dedup(
    folder: Path, per_call: int = 6, field: str = "emb"
) -> dict[tuple[int, float], np.ndarray]:
    """(call, end) -> readout (or ``field``), each call's first ``per_call`` windows, duplicates
    dropped."""
    files = sorted(folder.glob("shard*.npz"))
    if not files:
        raise SystemExit(f"no shards in {folder}")
    out: dict[tuple[int, float], np.ndarray] = {}
    count: Counter[int] = Counter()
    for f in files:
        z = np.load(f)
        for c, e, v in zip(z["call"].tolist(), z["end"].tolist(), z[field], strict=True):
            key = (int(c), round(float(e), 3))
            if key in out or count[key[0]] >= per_call:
                continue
            out[key] = v.astype(np.float64)
            count[key[0]] += 1
    return out


def build(
    a: argparse.Namespace, cs: Sequence[Call]
) -> tuple[Windows, list[tuple[int, float]], Windows | None]:
    models = a.models.split(",")
    tables = [load_dedup(a.cache / CACHE_OF[m]) for m in models]
    keys = sorted(tables[0])
    if a.subset:  # the windows every --subset model scored, whatever is fused
        for m in a.subset.split(","):
            ok = set(tables[models.index(m)] if m in models else load_dedup(a.cache / CACHE_OF[m]))
            keys = [k for k in keys if k in ok]
    if len(models) > 1 and not a.subset:
        raise SystemExit("fusion needs --subset (the calls every model scored)")
    x = np.stack([np.concatenate([t[k] for t in tables]) for k in keys])
    call = np.array([k[0] for k in keys])
    w = Windows(
        x,
        call,
        np.array([cs[c].is_fake for c in call]),
        np.array([cs[c].source for c in call]),
    )
    aug = same_calls(a.cache / a.aug, set(call.tolist()), cs) if a.aug else None
    return w, keys, aug


def same_calls(folder: Path, ids: set[int], cs: Sequence[Call]) -> Windows:
    """The windows of another cache (another channel) that belong to the calls ``ids``."""
    t = load_dedup(folder)
    ak = sorted(k for k in t if k[0] in ids)
    ac = np.array([k[0] for k in ak])
    return Windows(
        np.stack([t[k] for k in ak]),
        ac,
        np.array([cs[c].is_fake for c in ac]),
        np.array([cs[c].source for c in ac]),
    )


def call_eer(w: Windows, p: np.ndarray, mask: np.ndarray) -> float:
    ix = w.calls_in(mask & ~np.isnan(p))
    s = np.array([p[i].mean() for i in ix.values()])
    y = np.array([w.y[i[0]] for i in ix.values()])
    return clip_metrics(s, y)[0]


BALANCE = False  # --balance: every (source, class) pair weighs the same in the head's fit


def balanced_logistic(x: np.ndarray, y: np.ndarray, g: np.ndarray, c: float) -> Any:
    """fit_logistic with sample weights: each class sums to 1/2, split equally over its sources."""
    from sklearn.linear_model import LogisticRegression

    from streamd.export.aasist_head import HeadWeights

    sw = np.zeros(len(y))
    for label in (0, 1):
        srcs = sorted(set(g[y == label].tolist()))
        for s in srcs:
            m = (y == label) & (g == s)
            sw[m] = 1.0 / (2 * len(srcs) * m.sum())
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=3000, random_state=0)
    lr.fit((x - mean) / scale, y, sample_weight=sw * len(y))
    return HeadWeights(
        mean, scale, [(lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64))]
    )


def fitter(c: float, aug: Windows | None, w: Windows) -> Any:
    """A fit function for C; with ``aug``, the training calls' augmented windows join the fit
    (looked up by the call indices of the training rows)."""

    def fit(x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> Any:
        g = w.group[rows] if rows is not None else None
        if aug is not None and rows is not None:
            extra = np.isin(aug.call, w.call[rows])
            x = np.concatenate([x, aug.x[extra]])
            y = np.concatenate([y, aug.y[extra]])
            g = np.concatenate([g, aug.group[extra]]) if g is not None else None
        if BALANCE and g is not None:
            return balanced_logistic(x, y, g, c)
        return fit_logistic(x, y, c)

    return fit


def oof(w: Windows, fit: Any, mask: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """out_of_fold, passing the training rows so augmented windows can join."""
    groups = np.array(sorted(set(w.group[mask].tolist())))
    np.random.default_rng(seed).shuffle(groups)
    fold = {g: i % k for i, g in enumerate(groups)}
    fold_of = np.array([fold.get(g, -1) for g in w.group])
    p = np.full(len(w.y), np.nan)
    for f in range(k):
        te = mask & (fold_of == f)
        tr = mask & ~te
        if te.any() and len(set(w.y[tr].tolist())) == 2:
            p[te] = sigmoid(fit(w.x[tr], w.y[tr], np.flatnonzero(tr)).score(w.x[te]))
    return p


def choose(w: Windows, aug: Windows | None, mask: np.ndarray, grid: Sequence[float]) -> float:
    """The C with the lowest inner out-of-fold call EER on ``mask`` (ties: the smaller C)."""
    best = min((call_eer(w, oof(w, fitter(c, aug, w), mask), mask), c) for c in grid)
    return best[1]


def nested_loso(
    w: Windows,
    aug: Windows | None,
    grid: Sequence[float],
    say: Any = print,
    alt: Windows | None = None,
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Held-out p per window; with ``alt`` (the same calls through another channel), each fold
    also scores the held-out source's ``alt`` windows into ``alt.p``."""
    p = np.full(len(w.y), np.nan)
    if alt is not None:
        alt.p = np.full(len(alt.y), np.nan)  # type: ignore[attr-defined]
    thr: dict[str, float] = {}
    chosen: dict[str, float] = {}
    t0 = time.time()
    for g in sorted(set(w.group.tolist())):
        te, tr = w.group == g, w.group != g
        c = choose(w, aug, tr, grid) if len(grid) > 1 else grid[0]
        fit = fitter(c, aug, w)
        head = fit(w.x[tr], w.y[tr], np.flatnonzero(tr))
        p[te] = sigmoid(head.score(w.x[te]))
        if alt is not None:
            ta = alt.group == g
            alt.p[ta] = sigmoid(head.score(alt.x[ta]))  # type: ignore[attr-defined]
        thr[g] = threshold_from_scores(w, oof(w, fit, tr), tr)
        chosen[g] = c
        say(f"  fold {g}: C={c} thr={thr[g]:.4f} ({time.time() - t0:.0f}s)")
    return p, thr, chosen


def pct(v: float | None) -> str:
    return "–" if v is None or v != v else f"{100 * v:.1f}%"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--models", default="asv5", help="readouts to fuse (concatenated): " + ",".join(CACHE_OF)
    )
    ap.add_argument("--subset", help="only the windows these models (comma list) all scored")
    ap.add_argument("--aug", help="cache folder of augmented windows to add to training")
    ap.add_argument("--test-channel", help="cache folder: also score held-out calls through it")
    ap.add_argument("--balance", action="store_true", help="weigh sources equally in each class")
    ap.add_argument(
        "--published",
        help="also report these published models as they are (comma list; their logits, fold "
        "thresholds from the other sources' real calls, and 0.5), with --markdown",
    )
    ap.add_argument("--markdown", type=Path, help="write the doc's tables (final_eval layout)")
    ap.add_argument("--grid", default="0.001,0.003,0.01,0.03,0.1", help="C values to choose from")
    ap.add_argument("--no-logo", action="store_true", help="skip leave-one-generator-out")
    ap.add_argument("--tag", default="", help="name of the result JSON (nested-TAG.json)")
    add_paths(ap)
    a = ap.parse_args(argv)
    global BALANCE
    BALANCE = a.balance
    cs = calls(a.shared)
    grid = [float(v) for v in a.grid.split(",")]
    w, all_keys, aug = build(a, cs)
    ids = set(w.call.tolist())
    print(
        f"{len(w.y)} windows, {len(ids)} calls ({sum(cs[c].is_fake for c in ids)}"
        f" fake), {len(set(w.group.tolist()))} sources, dim {w.x.shape[1]}"
        + (f"; +{len(aug.y)} augmented training windows" if aug else "")
    )
    alt = same_calls(a.cache / a.test_channel, ids, cs) if a.test_channel else None
    p, thr, chosen = nested_loso(w, aug, grid, alt=alt)
    if alt is not None:
        same = np.where(np.isin(w.call, alt.call), p, np.nan)
        lo = loso_figures(w, same, thr, cs, shipped=0.5)["loso"]
        print(
            f"the same calls through G.711: clip EER {pct(lo['clip_eer'])} AUC {lo['auc']}; "
            f"real alerting {pct(lo['call_false_alarm'])}, fake {pct(lo['call_detection'])}"
        )
        fa = loso_figures(alt, alt.p, thr, cs, shipped=0.5)  # type: ignore[attr-defined]
        lo = fa["loso"]
        print(
            f"held-out calls through {a.test_channel} ({len(set(alt.call.tolist()))} calls): "
            f"clip EER {pct(lo['clip_eer'])} AUC {lo['auc']}; fold thresholds: real calls "
            f"alerting {pct(lo['call_false_alarm'])}, fake {pct(lo['call_detection'])}"
        )
    c_all = choose(w, aug, np.ones(len(w.y), bool), grid) if len(grid) > 1 else grid[0]
    fit_all = fitter(c_all, aug, w)
    ship = threshold_from_scores(w, p, np.ones(len(w.y), bool))
    f = loso_figures(w, p, thr, cs, shipped=ship)
    f["chosen_C_per_fold"] = chosen
    f["selected_on_all_sources"] = {"C": c_all}
    if not a.no_logo:
        f["logo"] = logo_figures(w, cs, lambda x, y: fit_all(x, y), p, ship)
    lo, s = f["loso"], f["at_shipped_threshold"]
    print(
        f"nested LOSO ({a.models}{' +aug ' + a.aug if a.aug else ''}): clip EER "
        f"{pct(lo['clip_eer'])} AUC {lo['auc']}; fold thresholds: real calls alerting "
        f"{pct(lo['call_false_alarm'])}, fake {pct(lo['call_detection'])}, median delay "
        f"{lo['median_delay_s']} s; [not held out: one threshold {ship:.4f} set on these pooled "
        f"scores: real {pct(s['call_false_alarm'])} fake {pct(s['call_detection'])}]"
    )
    print(f"C per fold: {dict(Counter(chosen.values()))}; selected on all sources: C={c_all}")
    if "logo" in f:
        lg = f["logo"]
        print(
            f"LOGO: {lg['generators']} generators, mean clip EER {pct(lg['mean_clip_eer'])}, "
            f"median {pct(lg['median_clip_eer'])}, mean fake calls alerting "
            f"{pct(lg['mean_call_detection'])}"
        )
    for src, v in sorted(f["loso_per_source"].items()):
        print(
            f"  {src:45s} real {v['real_calls']:4d} fake {v['fake_calls']:4d}  EER "
            f"{pct(v['clip_eer']):>6s} AUC {v['auc'] if v['auc'] is not None else '–'}  "
            f"real alerting {pct(v['call_false_alarm']):>6s} fake alerting "
            f"{pct(v['call_detection'])}"
        )
    if a.published or a.markdown:
        from final_eval import NAMES, markdown

        out = {"builtin": f}
        for m in (a.published or "").split(","):
            if not m:
                continue
            t = load_dedup(a.cache / CACHE_OF[m], field="logit")
            z = np.stack([t[k] for k in all_keys])
            pm = sigmoid(z[:, 0] - z[:, 1])
            th = {
                g: threshold_from_scores(w, pm, w.group != g) for g in sorted(set(w.group.tolist()))
            }
            name = {"asv5": "asv5_raw", "aasist-l": "aasistl_raw"}.get(m, m + "_raw")
            NAMES.setdefault(name, f"{m} (published)")
            out[name] = loso_figures(w, pm, th, cs, shipped=0.5)
            lo = out[name]["loso"]
            print(f"{m} as published: clip EER {pct(lo['clip_eer'])} AUC {lo['auc']}")
        if a.markdown:
            a.markdown.write_text(markdown(out))
            print("wrote", a.markdown)
    path = a.cache / f"nested-{a.tag or a.models.replace(',', '+')}.json"
    path.write_text(json.dumps(f, indent=1, default=str))
    print("wrote", path)


if __name__ == "__main__":
    main()
