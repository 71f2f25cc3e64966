"""Detection metrics for ``streamd eval``: EER, ROC-AUC, confusion matrix, threshold at a
false-alarm rate.

Pure numpy, so the runtime side can use it without torch or scikit-learn.

Convention everywhere: ``labels`` are 1 for the class the detector looks for (fake, spoof) and 0
for the other (real, bona fide); a higher score means "more likely label 1", and a clip is flagged
when ``score >= threshold``. For a model whose score means the opposite (the AASIST papers' logit
1, higher = bona fide), negate the score first. A false alarm is a real clip flagged as fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def _check(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate once: the metrics are silently wrong on NaN scores or one-class data."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("need at least one score of each class")
    return s, y


@dataclass(frozen=True)
class RocPoints:
    """Operating points at every distinct score, from strictest (nothing flagged) to laxest."""

    thresholds: np.ndarray  # descending; the first is +inf
    fpr: np.ndarray  # false-alarm rate: real flagged / real
    tpr: np.ndarray  # detection rate: fake flagged / fake

    @property
    def fnr(self) -> np.ndarray:
        return 1.0 - self.tpr


def roc_points(scores: ArrayLike, labels: ArrayLike) -> RocPoints:
    """All achievable ``(FPR, TPR)`` pairs for ``flag = score >= t``, tied scores moving
    together."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores: thresholds between distinct values
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return RocPoints(
        thresholds=np.r_[np.inf, s_sorted[last]],
        fpr=np.r_[0.0, fp / np.count_nonzero(~y)],
        tpr=np.r_[0.0, tp / np.count_nonzero(y)],
    )


@dataclass(frozen=True)
class EerResult:
    eer: float
    threshold: float


def equal_error_rate(scores: ArrayLike, labels: ArrayLike) -> EerResult:
    """EER where the ROC polyline crosses FPR = FNR, by linear interpolation between ROC points.

    Unlike the ASVspoof tools' "nearest point, mean of FAR and FRR", this is exact on the ROC
    curve (with ties as straight segments, consistent with the rank AUC), so two crossing points
    never bias it. The threshold is interpolated between the two bracketing thresholds by the same
    fraction; when the crossing lies before the first finite threshold it is that threshold.
    Perfect separation gives 0.0 at the lowest fake score; identical distributions give 0.5.
    """
    roc = roc_points(scores, labels)
    diff = roc.fnr - roc.fpr  # +1 at the strictest threshold, -1 at the laxest: it crosses zero
    k = int(np.argmax(diff <= 0.0))
    if diff[k] == 0.0:
        return EerResult(float(roc.fpr[k]), float(roc.thresholds[k]))
    frac = diff[k - 1] / (diff[k - 1] - diff[k])
    eer = roc.fpr[k - 1] + frac * (roc.fpr[k] - roc.fpr[k - 1])
    t_hi, t_lo = roc.thresholds[k - 1], roc.thresholds[k]
    threshold = t_lo if not np.isfinite(t_hi) else t_hi + frac * (t_lo - t_hi)
    return EerResult(float(eer), float(threshold))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing the mean of their ranks (what Mann-Whitney U needs)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse]


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """ROC-AUC as the Mann-Whitney statistic: P(fake score > real score), ties counting 1/2."""
    s, y = _check(scores, labels)
    n_pos = np.count_nonzero(y)
    n_neg = y.size - n_pos
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold; rows of :meth:`as_array` are true real/fake, columns predicted."""

    threshold: float
    tn: int  # real, passed
    fp: int  # real, flagged (false alarm)
    fn: int  # fake, missed
    tp: int  # fake, flagged

    def as_array(self) -> np.ndarray:
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)

    @property
    def false_alarm_rate(self) -> float:
        return self.fp / (self.fp + self.tn)

    @property
    def detection_rate(self) -> float:
        return self.tp / (self.tp + self.fn)

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / (self.tp + self.tn + self.fp + self.fn)


def confusion_at(scores: ArrayLike, labels: ArrayLike, threshold: float) -> Confusion:
    """Confusion matrix when every score ``>= threshold`` is called fake."""
    s, y = _check(scores, labels)
    flagged = s >= threshold
    return Confusion(
        threshold=float(threshold),
        tn=int(np.count_nonzero(~y & ~flagged)),
        fp=int(np.count_nonzero(~y & flagged)),
        fn=int(np.count_nonzero(y & ~flagged)),
        tp=int(np.count_nonzero(y & flagged)),
    )


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    false_alarm_rate: float  # achieved on the data, at most the target
    detection_rate: float


def threshold_at_false_alarm(
    scores: ArrayLike, labels: ArrayLike, max_false_alarm: float
) -> OperatingPoint:
    """The laxest observed-score threshold whose false-alarm rate on real clips is ``<= target``.

    Laxest means most fakes detected under that constraint. Thresholds are observed scores (or
    just above the highest one, when even flagging one real clip would exceed the target), so the
    figures are exactly what this data gives, with no interpolation.
    """
    if not 0.0 <= max_false_alarm <= 1.0:
        raise ValueError("max_false_alarm must be in [0, 1]")
    roc = roc_points(scores, labels)
    ok = np.flatnonzero(roc.fpr <= max_false_alarm + 1e-12)
    k = int(ok[-1])  # fpr is non-decreasing along the points, and index 0 (fpr 0) always passes
    threshold = roc.thresholds[k]
    if not np.isfinite(threshold):
        threshold = np.nextafter(roc.thresholds[1], np.inf)
    return OperatingPoint(float(threshold), float(roc.fpr[k]), float(roc.tpr[k]))
