"""Head fitting, per-call alert simulation and leave-one-group-out figures on cached embeddings.

Why per call: the daemon raises an alert when its smoother (EMA, raise_after windows in a row)
crosses the threshold, so a threshold that gives 1% of *windows* over it gives far more than 1% of
*calls* alerting. Thresholds here are always chosen on out-of-fold scores of training groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamd.export.aasist_head import HeadWeights
from streamd.offline.metrics import equal_error_rate, roc_auc

Fit = Callable[[np.ndarray, np.ndarray], HeadWeights]


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 0.1, seed: int = 0) -> HeadWeights:
    """Standardised, class-balanced L2 logistic regression (sklearn lbfgs, deterministic)."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
    lr.fit((x - mean) / scale, y)
    return HeadWeights(
        mean, scale, [(lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64))]
    )


def sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    return out


def ema_alert_stat(p: np.ndarray, alpha: float = 0.5, raise_after: int = 2) -> float:
    """The largest raise threshold at which this call alerts (smoother: EMA, raise_after in a row).

    A call alerts at threshold t iff some run of ``raise_after`` consecutive smoothed scores are
    all >= t, i.e. iff t <= max over runs of the run's minimum. -1 when it has too few windows.
    """
    if len(p) < raise_after:
        return -1.0
    s = np.empty(len(p))
    acc = float(p[0])
    for i, v in enumerate(p):
        acc = float(v) if i == 0 else alpha * float(v) + (1 - alpha) * acc
        s[i] = acc
    runs = np.lib.stride_tricks.sliding_window_view(s, raise_after).min(axis=1)
    return float(runs.max())


def first_alert(
    p: np.ndarray, threshold: float, alpha: float = 0.5, raise_after: int = 2
) -> int | None:
    """Index of the window at which the smoother raises, or None (clear never matters before)."""
    acc = 0.0
    above = 0
    for i, v in enumerate(p):
        acc = float(v) if i == 0 else alpha * float(v) + (1 - alpha) * acc
        above = above + 1 if acc >= threshold else 0
        if above >= raise_after:
            return i
    return None


def threshold_for_call_rate(real_stats: Sequence[float], target: float = 0.01) -> float:
    """Smallest threshold with at most ``target`` of the real calls alerting."""
    s = np.sort(np.asarray(real_stats, dtype=np.float64))[::-1]
    k = int(np.floor(target * len(s)))
    if k >= len(s):
        return 0.5
    return float(min(1.0, np.nextafter(max(s[k], 0.0), 1.0)))


@dataclass
class Windows:
    """Cached windows: features, and per window the call index (into ``calls``).

    ``extra``: more *training* windows of the same calls (the calls through other call channels).
    A head trained on some calls also sees their extra windows; scores, thresholds and figures
    are only ever computed on the main windows, so augmentation never reaches a held-out call.
    """

    x: np.ndarray  # [N, D]
    call: np.ndarray  # [N]
    y: np.ndarray  # [N] 1 = fake
    group: np.ndarray  # [N] source (or generator) of the window's call
    extra: Windows | None = None

    def train_set(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels to fit on for the windows in ``mask``, plus those calls' extra
        windows."""
        x, y = self.x[mask], self.y[mask]
        if self.extra is None:
            return x, y
        more = np.isin(self.extra.call, self.call[mask])
        return np.concatenate([x, self.extra.x[more]]), np.concatenate([y, self.extra.y[more]])

    def calls_in(self, mask: np.ndarray) -> dict[int, np.ndarray]:
        out: dict[int, list[int]] = {}
        for i in np.flatnonzero(mask):
            out.setdefault(int(self.call[i]), []).append(int(i))
        return {c: np.asarray(v) for c, v in out.items()}


def out_of_fold(w: Windows, fit: Fit, mask: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """Window p_fake for ``mask`` windows, each from a head that never saw its group (k folds)."""
    groups = np.array(sorted(set(w.group[mask].tolist())))
    np.random.default_rng(seed).shuffle(groups)
    fold = {g: i % k for i, g in enumerate(groups)}
    fold_of = np.array([fold.get(g, -1) for g in w.group])
    p = np.full(len(w.y), np.nan)
    for f in range(k):
        te = mask & (fold_of == f)
        tr = mask & ~te
        if te.any() and len(set(w.y[tr].tolist())) == 2:
            p[te] = sigmoid(fit(*w.train_set(tr)).score(w.x[te]))
    return p


def call_clip_eer(w: Windows, p: np.ndarray, mask: np.ndarray) -> float:
    """EER over the calls in ``mask`` of their mean window score (NaN with one class)."""
    ix = w.calls_in(mask & ~np.isnan(p))
    s = np.array([p[i].mean() for i in ix.values()])
    y = np.array([w.y[i[0]] for i in ix.values()])
    return clip_metrics(s, y)[0]


def choose_c(
    w: Windows, mask: np.ndarray, grid: Sequence[float], fit_for: Callable[[float], Fit], k: int = 5
) -> float:
    """The C of ``grid`` whose inner out-of-fold call EER over the groups in ``mask`` is lowest
    (ties: the smaller C). Only ``mask`` is read, so a fold's choice never sees its test group."""
    if len(grid) == 1:
        return float(grid[0])
    scored = [(call_clip_eer(w, out_of_fold(w, fit_for(c), mask, k), mask), c) for c in grid]
    return float(min((e if e == e else 1.0, c) for e, c in scored)[1])


def threshold_from_scores(
    w: Windows,
    p: np.ndarray,
    mask: np.ndarray,
    target: float = 0.01,
    alpha: float = 0.5,
    raise_after: int = 2,
) -> float:
    stats = [
        ema_alert_stat(p[ix], alpha, raise_after)
        for ix in w.calls_in(mask & ~np.isnan(p)).values()
        if w.y[ix[0]] == 0
    ]
    return threshold_for_call_rate(stats, target)


def leave_one_group_out(
    w: Windows,
    fit: Fit,
    target: float = 0.01,
    inner_k: int = 5,
    test_mask: Callable[[str], np.ndarray] | None = None,
    choose: Callable[[np.ndarray], Fit] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Held-out window p_fake for every window, and the threshold each fold chose on its own
    training groups (inner out-of-fold scores). ``test_mask(g)`` overrides what a fold tests;
    ``choose(train_mask)`` picks the fold's fit from its training groups alone (nested)."""
    p = np.full(len(w.y), np.nan)
    thresholds: dict[str, float] = {}
    for g in sorted(set(w.group.tolist())):
        te = test_mask(g) if test_mask else w.group == g
        tr = w.group != g
        if test_mask:
            tr &= ~te
        f = choose(tr) if choose else fit
        p[te] = sigmoid(f(*w.train_set(tr)).score(w.x[te]))
        thresholds[g] = threshold_from_scores(w, out_of_fold(w, f, tr, inner_k), tr, target)
    return p, thresholds


def clip_metrics(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(EER, AUC), NaN when one class is missing."""
    if len(set(np.asarray(y).tolist())) < 2:
        return float("nan"), float("nan")
    return float(equal_error_rate(scores, y).eer), float(roc_auc(scores, y))
