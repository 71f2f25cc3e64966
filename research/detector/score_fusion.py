"""Score-level fusion, fitted on held-out groups, nested in leave-one-source-out.

  score_fusion.py --models asv5,rawgat,aasist-l --subset aasist-l,rawgat

For each outer fold (one source held out), on its training sources only: each model's head (its C
chosen by inner source folds, as nested_eval.py) yields inner out-of-fold logits; a small logistic
regression on those logits is the fusion. The held-out source is scored by each model's head fit
on all training sources, then fused. The fold's alert threshold comes from the fused inner
out-of-fold scores of its training real calls. Why score fusion: concatenating readouts lets the
head fit source-specific directions of the weaker models (nested_eval.py measured it worse); a
fusion of a few scores cannot.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from nested_eval import CACHE_OF, build, choose, fitter, oof, pct
from windows import add_paths, calls

from streamd.training.phone_head import Windows, fit_logistic, sigmoid, threshold_from_scores
from streamd.training.phone_report import loso_figures


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: np.ndarray = np.log(q / (1 - q))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="asv5,rawgat,aasist-l", help=",".join(CACHE_OF))
    ap.add_argument("--subset", default="aasist-l,rawgat", help="windows these models all scored")
    ap.add_argument("--grid", default="0.001,0.003,0.01,0.03,0.1")
    ap.add_argument("--fusion-C", type=float, default=1.0, help="C of the fusion regression")
    add_paths(ap)
    a = ap.parse_args(argv)
    a.aug = None
    cs = calls(a.shared)
    grid = [float(v) for v in a.grid.split(",")]
    w, _, _ = build(a, cs)
    dims = {"asv5": 160, "aasist-l": 160, "aasist": 160, "rawgat": 7}
    names = a.models.split(",")
    cols, k0 = {}, 0
    for m in names:
        cols[m] = slice(k0, k0 + dims[m])
        k0 += dims[m]
    per = {m: Windows(w.x[:, cols[m]], w.call, w.y, w.group) for m in names}
    p = np.full(len(w.y), np.nan)
    thr: dict[str, float] = {}
    weights: dict[str, list[float]] = {}
    for g in sorted(set(w.group.tolist())):
        te, tr = w.group == g, w.group != g
        inner, test = [], []
        for m in names:
            wm = per[m]
            c = choose(wm, None, tr, grid)
            fit = fitter(c, None, wm)
            inner.append(logit(oof(wm, fit, tr)))
            test.append(fit(wm.x[tr], wm.y[tr]).score(wm.x[te]))
        zi = np.stack(inner, 1)
        ok = tr & np.isfinite(zi).all(1)
        fuse = fit_logistic(zi[ok], w.y[ok], a.fusion_C)
        p[te] = sigmoid(fuse.score(np.stack(test, 1)))
        q = np.full(len(w.y), np.nan)
        q[ok] = sigmoid(fuse.score(zi[ok]))
        thr[g] = threshold_from_scores(w, q, ok)
        weights[g] = (fuse.layers[0][0][0] / fuse.scale).round(3).tolist()
        print(f"  fold {g}: fusion weights {weights[g]} thr {thr[g]:.4f}", flush=True)
    f: dict[str, Any] = loso_figures(w, p, thr, cs, shipped=0.5)
    f["fusion_weights_per_fold"] = weights
    lo = f["loso"]
    print(
        f"score fusion ({a.models}) on {len(set(w.call.tolist()))} calls: clip EER "
        f"{pct(lo['clip_eer'])} AUC {lo['auc']}; fold thresholds: real calls alerting "
        f"{pct(lo['call_false_alarm'])}, fake {pct(lo['call_detection'])}"
    )
    path = a.cache / f"score-fusion-{a.models.replace(',', '+')}.json"
    path.write_text(json.dumps(f, indent=1, default=str))
    print("wrote", path)


if __name__ == "__main__":
    main()
