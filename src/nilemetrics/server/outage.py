"""Database outages in the log: a line when one starts, summaries, a line when it ends.

Under load every request fails while the database is away: one warning per
503 buried the log. This keeps it to a few lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Least time between two summary lines of one outage.
SUMMARY_INTERVAL = 10.0


class OutageLog:
    """Counts requests answered 503 and logs them at most once per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None  # when the outage began (None: no outage)
        self._last_line = 0.0
        self._pending = 0  # 503s since the last line
        self._total = 0
        self._reason = ""

    @property
    def ongoing(self) -> bool:
        """Whether requests have failed since the database last worked."""
        return self._started is not None

    def failed(self, reason: str, request: str = "") -> None:
        """One request (``"POST /path"``) was answered 503: the database is unavailable."""
        with self._lock:
            now = self._clock()
            self._total += 1
            self._reason = reason
            if self._started is None:
                self._started = self._last_line = now
                self._pending = 0
                first = f" (first: {request})" if request else ""
                self._log.warning("database unavailable, answering 503%s: %s", first, reason)
                return
            self._pending += 1
            elapsed = now - self._last_line
            if elapsed >= self._interval:
                self._log.warning(
                    "database unavailable: %d requests answered 503 in the last %.0f s: %s",
                    self._pending, elapsed, reason,
                )
                self._pending = 0
                self._last_line = now

    def succeeded(self) -> None:
        """The database worked again (a batch committed, a cleanup ran)."""
        if self._started is None:  # the common case: no lock taken
            return
        with self._lock:
            if self._started is None:
                return
            self._log.warning(
                "database available again after %.0f s; %d requests were answered 503 "
                "(last error: %s)",
                self._clock() - self._started, self._total, self._reason,
            )
            self._started = None
            self._pending = self._total = 0
