"""``streamd score``'s verdict says the rule it applied; --hop/--length are checked like the
config."""

from __future__ import annotations

from typing import Any

import pytest

from streamd.cli.score import AlertRule, apply_window_overrides, verdict_text
from streamd.config import parse_config
from streamd.errors import UsageError
from streamd.offline.score import FileReport


def report(windows: int, max_score: float, alert: bool) -> FileReport:
    summary: dict[str, Any] = {
        "windows": windows,
        "max_score": max_score,
        "mean_score": max_score,
        "speech_s": 4.0,
        "alert_raised": alert,
    }
    return FileReport("x.wav", windows=[{}] * windows, summary=summary)


RULE = AlertRule.of(parse_config({}, "test", environ={}), 0.5)


def test_rule_text_names_thresholds_smoothing_and_hysteresis() -> None:
    assert RULE.describe() == (
        "alert when the smoothed score (EMA, alpha 0.5) is >= 0.500 for 2 windows in a row; "
        "it clears at <= 0.400 for 3 windows"
    )
    mean = AlertRule.of(
        parse_config({"alerts": {"method": "mean", "n": 1, "raise_after": 1}}, "t", environ={}),
        0.7,
    )
    assert (
        "mean of the last 1 window)" in mean.describe()
        and "for 1 window in a row" in mean.describe()
    )


def test_one_window_at_1_says_why_it_is_not_an_alert() -> None:
    text = verdict_text(report(1, 1.0, False), RULE, 2.5, "tiny")
    assert text.startswith("verdict: REAL (no alert: 1 window scored, fewer than the 2 in a row")
    assert "although p_fake reached 1.000" in text
    assert "1 windows" not in text


def test_plain_verdicts() -> None:
    assert verdict_text(report(5, 0.9, True), RULE, 2.5, "tiny").startswith(
        "verdict: FAKE (alert raised; 5 windows, max p_fake 0.900"
    )
    assert verdict_text(report(5, 0.2, False), RULE, 2.5, "tiny").startswith(
        "verdict: REAL (no alert; 5 windows"
    )


@pytest.mark.parametrize(
    ("hop", "length", "message"),
    [
        (-1.0, None, "--hop: Input should be greater than 0"),
        (0.0, None, "--hop: Input should be greater than 0"),
        (None, 1.0, "--length: min_s (2.5) must not exceed length_s (1.0)"),
        (None, -4.0, "--length: Input should be greater than 0"),
    ],
)
def test_bad_hop_and_length_are_usage_errors(
    hop: float | None, length: float | None, message: str
) -> None:
    cfg = parse_config({}, "test", environ={})
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        apply_window_overrides(cfg, hop, length)


def test_good_overrides_apply() -> None:
    cfg = parse_config({}, "test", environ={})
    apply_window_overrides(cfg, 0.5, 3.0)
    assert (cfg.windows.hop_s, cfg.windows.length_s) == (0.5, 3.0)
