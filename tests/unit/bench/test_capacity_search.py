"""The capacity search: galloping up, then halving, to the largest N that passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.bench.capacity import Search, build_config, parse_path
from streamd.bench.load import TrialResult
from streamd.errors import UsageError


def trial(n: int, passed: bool) -> TrialResult:
    return TrialResult(
        path="p", streams=n, passed=passed, seconds=1, windows=1, windows_per_s=1, p50_s=0.1,
        p99_s=0.2, max_s=0.3, unscored=0, cpu_per_stream=0.1, feed_lag_p99_s=0, mean_batch=1,
        load=0,
    )  # fmt: skip


def search(capacity: int, start: int, max_n: int = 5000) -> tuple[Search, int]:
    s = Search(start, max_n)
    steps = 0
    while (n := s.next()) is not None:
        s.record(trial(n, n <= capacity))
        steps += 1
        assert steps < 60
    return s, steps


@given(st.integers(0, 3000), st.integers(1, 500))
def test_search_finds_the_capacity_to_its_resolution(capacity: int, start: int) -> None:
    s, steps = search(capacity, start)
    assert s.lo <= capacity  # never claims more than passed
    if capacity == 0:
        assert s.lo == 0
    else:
        assert s.hi is not None and s.hi > capacity
        assert s.hi - s.lo <= max(1, int(0.1 * s.lo))
    assert steps <= 30


def test_search_stops_at_max_streams() -> None:
    s, _ = search(capacity=10_000, start=100, max_n=400)
    assert s.lo == 400 and s.hi is None


def test_paths_are_presets_or_overrides() -> None:
    name, over = parse_path("today")
    assert name == "today" and over == {}
    name, over = parse_path("new:model.workers=1")
    assert over["model.workers"] == 1 and over["windows.adaptive.enabled"] is True
    name, over = parse_path("mine:model.batch_max=4,windows.adaptive.enabled=true")
    cfg = build_config({}, over)
    assert cfg.model.batch_max == 4 and cfg.windows.adaptive.enabled
    with pytest.raises(UsageError):
        parse_path("nosuch")
    with pytest.raises(UsageError):
        parse_path("x:model.batch_max")
