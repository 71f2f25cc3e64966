"""Per-call calibration: the alert level of a call agrees with the daemon's smoother, and the
threshold leaves at most the target share of real calls alerting."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from streamd.pipeline.calibration import (
    Calibration,
    alert_rate,
    call_alert_level,
    threshold_for_rate,
)
from streamd.pipeline.smoother import Smoother


def raises(p: list[float], thr: float, method: str, alpha: float, n: int, after: int) -> bool:
    s = Smoother(thr, max(0.0, thr - 0.1), method, alpha, n, after, 3)  # type: ignore[arg-type]
    for v in p:
        s.update(v)
    return s.ever_raised


@pytest.mark.parametrize("method", ["ema", "mean"])
def test_alert_level_is_the_smoothers_raise_boundary(method: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.beta(0.5, 2.0, size=int(rng.integers(1, 12))).tolist()
        after = int(rng.integers(1, 4))
        lv = call_alert_level(p, method, 0.5, 3, after)
        if lv < 0:
            assert len(p) < after
            continue
        assert raises(p, lv, method, 0.5, 3, after)
        assert not raises(p, float(np.nextafter(lv, 2.0)) + 1e-9, method, 0.5, 3, after)


def test_threshold_meets_the_target_rate() -> None:
    levels = np.random.default_rng(1).uniform(0, 1, 5000).tolist()
    for target in (0.0, 0.001, 0.01, 0.1):
        t = threshold_for_rate(levels, target)
        assert alert_rate(levels, t) <= target
        assert alert_rate(levels, t - 1e-3) > target or t <= 1e-3


def test_calibration_file_round_trip_and_groups(tmp_path: Path) -> None:
    cal = Calibration("m", "abc", 0.8, 0.01, 1000, {"sip": 0.7, "en": 0.9}, "source")
    path = tmp_path / "calibration.yaml"
    path.write_text(cal.to_yaml())
    back = Calibration.read(path)
    assert back is not None and back.raise_ == 0.8 and back.by_group == {"sip": 0.7, "en": 0.9}
    assert back.raise_for("sip", {}) == 0.7 and back.raise_for("twilio", {}) == 0.8
    by_label = Calibration("m", "abc", 0.8, 0.01, 10, {"en": 0.9}, "label:lang")
    assert by_label.raise_for("sip", {"lang": "en"}) == 0.9
    assert by_label.raise_for("sip", {"lang": "de"}) == 0.8
    assert Calibration.read(tmp_path / "missing.yaml") is None


def test_calls_from_store_groups_windows_per_stream(tmp_path: Path) -> None:
    from streamd.cli.calibrate import calls_from_store
    from streamd.events.store import EventStore

    db = tmp_path / "events.db"
    store = EventStore(db)
    for i in range(6):
        store.append(
            {
                "id": i + 1,
                "type": "window.scored",
                "ts": "2026-01-01T00:00:00Z",
                "stream": {"stream_id": f"s{i % 2}", "source": "sip", "labels": {}},
                "score": 0.1 * i,
                "model": {"name": "m", "sha256": "abc"},
            }
        )
    store.append(
        {
            "id": 7,
            "type": "window.scored",
            "ts": "2026-01-01T00:00:00Z",
            "stream": {"stream_id": "other", "source": "sip"},
            "score": 0.9,
            "model": {"name": "x", "sha256": "zzz"},
        }
    )
    store.close()
    calls = calls_from_store(db, None, "abc")
    assert sorted(len(c["scores"]) for c in calls) == [3, 3]
    assert [round(v, 3) for v in calls[0]["scores"]] == [0.0, 0.2, 0.4]
    assert sqlite3.connect(db).execute("select count(*) from events").fetchone()[0] == 7
    assert json.dumps(calls)  # plain data
