"""Thresholds from the user's own real traffic, for a target share of calls alerting.

Why: fakes are rare on a real line but real calls are plentiful, and a detector's score
distribution shifts with the line (codec, language, handsets). The false-alarm rate a contact
center cares about is per call, and a call alerts when its smoothed score stays over ``raise``
for ``raise_after`` windows, so the threshold is found on whole calls' window-score sequences.
``<model.dir>/calibration.yaml`` is read by the hub at start when it names the model in use.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

CALIBRATION_FILE = "calibration.yaml"


def smoothed(p: Sequence[float], method: str = "ema", alpha: float = 0.5, n: int = 3) -> np.ndarray:
    """The smoother's score after each window (streamd.pipeline.smoother, without hysteresis)."""
    out = np.empty(len(p))
    acc = 0.0
    for i, v in enumerate(p):
        if method == "ema":
            acc = float(v) if i == 0 else alpha * float(v) + (1 - alpha) * acc
            out[i] = acc
        else:
            out[i] = float(np.mean(p[max(0, i - n + 1) : i + 1]))
    return out


def call_alert_level(
    p: Sequence[float], method: str = "ema", alpha: float = 0.5, n: int = 3, raise_after: int = 2
) -> float:
    """Largest raise threshold at which this call alerts; -1 when it has too few windows."""
    if len(p) < raise_after:
        return -1.0
    s = smoothed(p, method, alpha, n)
    return float(np.lib.stride_tricks.sliding_window_view(s, raise_after).min(axis=1).max())


def threshold_for_rate(levels: Sequence[float], target: float) -> float:
    """Smallest threshold with at most ``target`` of the calls alerting (levels of real calls)."""
    s = np.sort(np.asarray(levels, dtype=np.float64))[::-1]
    k = int(np.floor(target * len(s)))
    if len(s) == 0:
        raise ValueError("no calls to calibrate on")
    if k >= len(s):
        return 0.0
    return float(min(1.0, np.nextafter(max(s[k], 0.0), 2.0)))


def alert_rate(levels: Sequence[float], threshold: float) -> float:
    a = np.asarray(levels, dtype=np.float64)
    return float((a >= threshold).mean()) if a.size else float("nan")


@dataclass
class Calibration:
    model: str
    model_sha256: str
    raise_: float
    target: float
    calls: int
    by_group: dict[str, float] = field(default_factory=dict)
    group_key: str | None = None  # "source" or "label:NAME"
    created: float = field(default_factory=time.time)

    def to_yaml(self) -> str:
        d: dict[str, Any] = {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "raise": round(self.raise_, 6),
            "target_call_false_alarm": self.target,
            "calls": self.calls,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }
        if self.by_group:
            d["group_key"] = self.group_key
            d["by_group"] = {k: round(v, 6) for k, v in self.by_group.items()}
        return yaml.safe_dump(d, sort_keys=False)

    @classmethod
    def read(cls, path: Path) -> Calibration | None:
        if not path.is_file():
            return None
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(
            str(d.get("model", "")),
            str(d.get("model_sha256", "")),
            float(d["raise"]),
            float(d.get("target_call_false_alarm", 0.01)),
            int(d.get("calls", 0)),
            {str(k): float(v) for k, v in (d.get("by_group") or {}).items()},
            d.get("group_key"),
        )

    def group_of(self, source: str, labels: dict[str, str]) -> str | None:
        if self.group_key == "source":
            return source
        if self.group_key and self.group_key.startswith("label:"):
            return labels.get(self.group_key[6:])
        return None

    def raise_for(self, source: str, labels: dict[str, str]) -> float:
        g = self.group_of(source, labels)
        return self.by_group.get(g, self.raise_) if g is not None else self.raise_
