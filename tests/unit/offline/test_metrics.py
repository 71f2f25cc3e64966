"""EER, ROC-AUC, confusion matrix and the false-alarm operating point on scores with known
answers."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.offline.metrics import (
    confusion_at,
    equal_error_rate,
    roc_auc,
    roc_points,
    threshold_at_false_alarm,
)

# hand-computed example: fakes 0.9 0.8 0.4, reals 0.7 0.3 0.2 0.1
HAND_SCORES = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
HAND_LABELS = np.array([1, 1, 1, 0, 0, 0, 0])


def test_perfect_separation() -> None:
    scores = np.r_[np.linspace(0.6, 1.0, 50), np.linspace(0.0, 0.5, 70)]
    labels = np.r_[np.ones(50), np.zeros(70)]
    result = equal_error_rate(scores, labels)
    assert result.eer == 0.0
    assert 0.5 < result.threshold <= 0.6
    assert roc_auc(scores, labels) == 1.0
    assert roc_auc(-scores, labels) == 0.0
    assert equal_error_rate(-scores, labels).eer == 1.0


def test_identical_distributions() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20000)
    labels = rng.integers(0, 2, size=20000)
    assert equal_error_rate(scores, labels).eer == pytest.approx(0.5, abs=0.02)
    assert roc_auc(scores, labels) == pytest.approx(0.5, abs=0.02)
    # all scores tied: the ROC is the diagonal, EER exactly one half
    assert equal_error_rate(np.zeros(10), np.r_[np.ones(4), np.zeros(6)]).eer == 0.5
    assert roc_auc(np.zeros(10), np.r_[np.ones(4), np.zeros(6)]) == 0.5


def test_hand_computed_example() -> None:
    # ROC points (FPR, FNR): (0,1) (0,2/3) (0,1/3) (1/4,1/3) (1/4,0) ...; FNR crosses FPR on the
    # segment from t=0.7 to t=0.4 a quarter of the way along: EER 1/4, threshold 0.625.
    # (The ASVspoof "nearest point" rule would say (1/3 + 1/4) / 2 = 7/24 here.)
    result = equal_error_rate(HAND_SCORES, HAND_LABELS)
    assert result.eer == pytest.approx(0.25)
    assert result.threshold == pytest.approx(0.625)
    # fake > real in 4 + 4 + 3 of the 12 pairs
    assert roc_auc(HAND_SCORES, HAND_LABELS) == pytest.approx(11 / 12)
    roc = roc_points(HAND_SCORES, HAND_LABELS)
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1])


def test_eer_equals_far_and_frr_at_its_threshold_on_large_gaussians() -> None:
    # d' = 2 between unit Gaussians: EER = Phi(-1) = 0.15866
    rng = np.random.default_rng(1)
    fake, real = rng.normal(2.0, 1.0, 200000), rng.normal(0.0, 1.0, 200000)
    scores = np.r_[fake, real]
    labels = np.r_[np.ones(fake.size), np.zeros(real.size)]
    result = equal_error_rate(scores, labels)
    assert result.eer == pytest.approx(0.158655, abs=0.003)
    assert result.threshold == pytest.approx(1.0, abs=0.02)
    cm = confusion_at(scores, labels, result.threshold)
    assert cm.false_alarm_rate == pytest.approx(result.eer, abs=1e-3)
    assert 1 - cm.detection_rate == pytest.approx(result.eer, abs=1e-3)


def test_auc_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    for trial in range(20):
        n = int(rng.integers(5, 300))
        labels = rng.integers(0, 2, size=n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + 0.7 * labels, int(trial % 3))  # many ties
        assert roc_auc(scores, labels) == pytest.approx(
            sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12
        )


def test_eer_is_within_the_roc_bracket_like_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=500)
    scores = np.round(rng.normal(size=500) + labels, 1)
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores)
    fnr = 1 - tpr
    k = int(np.argmax(fnr <= fpr))
    lo, hi = max(fpr[k - 1], fnr[k]), min(fnr[k - 1], fpr[k])
    assert lo - 1e-12 <= equal_error_rate(scores, labels).eer <= hi + 1e-12


def test_confusion_matrix() -> None:
    cm = confusion_at(HAND_SCORES, HAND_LABELS, 0.5)
    np.testing.assert_array_equal(cm.as_array(), [[3, 1], [1, 2]])
    assert cm.false_alarm_rate == 0.25
    assert cm.detection_rate == pytest.approx(2 / 3)
    assert cm.accuracy == pytest.approx(5 / 7)
    # the threshold itself is flagged (score >= threshold)
    assert confusion_at(HAND_SCORES, HAND_LABELS, 0.7).fp == 1


def test_threshold_at_false_alarm() -> None:
    point = threshold_at_false_alarm(HAND_SCORES, HAND_LABELS, 0.25)
    assert (point.threshold, point.false_alarm_rate, point.detection_rate) == (0.4, 0.25, 1.0)
    point = threshold_at_false_alarm(HAND_SCORES, HAND_LABELS, 0.1)
    assert (point.threshold, point.false_alarm_rate) == (0.8, 0.0)
    assert point.detection_rate == pytest.approx(2 / 3)
    cm = confusion_at(HAND_SCORES, HAND_LABELS, point.threshold)
    assert cm.false_alarm_rate == point.false_alarm_rate
    # a real clip above every fake: only a threshold above all scores keeps the rate at 0
    point = threshold_at_false_alarm([0.5, 0.9], [1, 0], 0.0)
    assert point.threshold > 0.9 and point.detection_rate == 0.0 and point.false_alarm_rate == 0.0
    with pytest.raises(ValueError):
        threshold_at_false_alarm(HAND_SCORES, HAND_LABELS, 1.5)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="each class"):
        equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        roc_auc([0.1, 0.2], [0, 2])
