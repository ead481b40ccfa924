"""One progress reporter for every long loop: done out of total, rate and time left in the log.

Export, push, verify, scoring and retention all report the same way, so an operator reads one
format in every task log, and a stage that stalls shows it within `every` seconds.
"""

from __future__ import annotations

import logging
import time


class Progress:
    """Logs `done/total unit (rate unit/s, about Ns left)` at most every `every` seconds (and
    when the total is reached), then `finish` logs the totals."""

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger,
        *,
        unit: str = "rows",
        every: float = 5.0,
    ) -> None:
        self.what, self.total, self.log, self.unit, self.every = what, total, logger, unit, every
        self.done = 0
        self.started = time.monotonic()
        self._last = self.started

    def add(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = max(self.total - self.done, 0) / rate if rate else float("inf")
            self.log.info(
                "%s %d/%d %s (%.0f %s/s, about %.0fs left)",
                self.what,
                self.done,
                self.total,
                self.unit,
                rate,
                self.unit,
                left,
            )

    def finish(self) -> float:
        """Log the totals; returns the seconds elapsed."""
        elapsed = time.monotonic() - self.started
        self.log.info(
            "%s %d %s in %.1fs (%.0f %s/s)",
            self.what,
            self.done,
            self.unit,
            elapsed,
            self.done / max(elapsed, 1e-9),
            self.unit,
        )
        return elapsed
