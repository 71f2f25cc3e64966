"""Warnings a hostile or broken peer cannot turn into a flood: shared by every ingest adapter."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Warnings at most ``burst`` at once and ``per_s`` a second; the rest are counted.

    A peer sending thousands of bad frames a second must neither flood the journal nor spend
    the event loop on formatting, so lines over the budget only bump a counter that the next
    line that gets through reports.
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 20,
        per_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.per_s = per_s
        self.clock = clock
        self.tokens = float(burst)
        self.suppressed = 0
        self._last = clock()

    def warning(self, msg: str, *args: object) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.per_s)
        self._last = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return False
        self.tokens -= 1.0
        if self.suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self.logger.warning(msg, *args)
        return True
