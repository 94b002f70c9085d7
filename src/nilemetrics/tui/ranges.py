"""The periods the History and Report screens look back over, each on its key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nilemetrics.protocol.history import STEP_SECONDS, Step


@dataclass(frozen=True, slots=True)
class Range:
    """A period ending now: its key, its label, its length and its history bucket."""

    key: str
    label: str
    seconds: int
    step: Step
    tick_format: str
    """How a chart's time axis labels a bucket (local time)."""

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``since`` and ``until`` of the period up to ``now``, whole buckets, the current one
        included."""
        width = STEP_SECONDS[self.step]
        end = int(now.timestamp() // width + 1) * width
        until = datetime.fromtimestamp(end, UTC)
        return until - timedelta(seconds=self.seconds), until


RANGES: tuple[Range, ...] = (
    Range("h", "1h", 3600, Step.MINUTE, "%H:%M"),
    Range("d", "24h", 86400, Step.FIVE_MINUTES, "%H:%M"),
    Range("w", "7d", 7 * 86400, Step.HOUR, "%a %H:%M"),
    Range("m", "30d", 30 * 86400, Step.HOUR, "%d %b"),
)

RANGES_BY_KEY: dict[str, Range] = {r.key: r for r in RANGES}
