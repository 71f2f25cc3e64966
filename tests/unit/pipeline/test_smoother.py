from __future__ import annotations

import pytest

from streamd.pipeline.smoother import Smoother


def feed(s: Smoother, values: list[float]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        t = s.update(v)
        if t:
            out.append((i, t.kind))
    return out


def test_raise_needs_consecutive_windows_over_threshold() -> None:
    s = Smoother(0.7, 0.3, method="mean", n=1, raise_after=2, clear_after=3)
    assert feed(s, [0.9, 0.1, 0.9, 0.9]) == [(3, "raised")]
    assert s.alerting and s.ever_raised


def test_clear_needs_consecutive_windows_under_clear() -> None:
    s = Smoother(0.7, 0.3, method="mean", n=1, raise_after=1, clear_after=3)
    assert feed(s, [0.9, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1]) == [(0, "raised"), (6, "cleared")]
    assert not s.alerting and s.ever_raised


def test_hysteresis_band_holds_state() -> None:
    s = Smoother(0.7, 0.3, method="mean", n=1, raise_after=1, clear_after=1)
    assert feed(s, [0.8, 0.5, 0.5, 0.5, 0.69]) == [(0, "raised")]


def test_ema_values() -> None:
    s = Smoother(0.99, 0.0, method="ema", alpha=0.5)
    for v in (1.0, 0.0, 1.0):
        s.update(v)
    assert s.score == pytest.approx(0.75)  # 1 -> 0.5 -> 0.75


def test_mean_of_n() -> None:
    s = Smoother(0.99, 0.0, method="mean", n=3)
    for v in (0.9, 0.0, 0.3, 0.6):
        s.update(v)
    assert s.score == pytest.approx(0.3)


def test_one_spike_does_not_raise_with_ema() -> None:
    s = Smoother(0.7, 0.4, method="ema", alpha=0.5, raise_after=2)
    assert feed(s, [0.1, 1.0, 0.1, 0.1]) == []


def test_clear_above_raise_is_refused() -> None:
    with pytest.raises(ValueError):
        Smoother(0.5, 0.6)
