"""Per-stream smoothing with hysteresis, so one odd window neither raises nor clears an alert."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Literal["raised", "cleared"]
    score: float


class Smoother:
    def __init__(
        self,
        raise_: float,
        clear: float,
        method: Literal["ema", "mean"] = "ema",
        alpha: float = 0.5,
        n: int = 3,
        raise_after: int = 2,
        clear_after: int = 3,
    ) -> None:
        if clear > raise_:
            raise ValueError("clear threshold must not exceed raise threshold")
        self.raise_ = raise_
        self.clear = clear
        self.method = method
        self.alpha = alpha
        self.raise_after = raise_after
        self.clear_after = clear_after
        self._recent: deque[float] = deque(maxlen=n)
        self.score: float | None = None
        self.alerting = False
        self.ever_raised = False
        self._above = 0
        self._below = 0

    def update(self, p: float) -> Transition | None:
        if self.method == "ema":
            self.score = p if self.score is None else self.alpha * p + (1 - self.alpha) * self.score
        else:
            self._recent.append(p)
            self.score = sum(self._recent) / len(self._recent)
        s = self.score
        if not self.alerting:
            self._above = self._above + 1 if s >= self.raise_ else 0
            if self._above >= self.raise_after:
                self.alerting, self.ever_raised, self._below = True, True, 0
                return Transition("raised", s)
        else:
            self._below = self._below + 1 if s <= self.clear else 0
            if self._below >= self.clear_after:
                self.alerting, self._above = False, 0
                return Transition("cleared", s)
        return None
