"""The dashboard's clocks: when frames came, the server's time, the local time (no Textual)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class FeedClock:
    """Times the app notes as frames arrive and the screens read.

    Ages and staleness use the monotonic clock (a wall-clock jump must not make
    data look fresh or stale); the alert window and sparklines use the server's
    time, extrapolated from its last timestamp.
    """

    def __init__(
        self,
        monotonic: Callable[[], float],
        wall_clock: Callable[[], datetime],
        heartbeat_interval: float,
    ) -> None:
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.heartbeat_interval = heartbeat_interval
        """The server's heartbeat interval; no frame for two of them is stale."""
        self.last_frame_at = monotonic()
        """Monotonic time of the last frame, malformed ones included."""
        self.data_at: float | None = None
        """Monotonic time of the last well-formed frame (``None``: none yet)."""
        self._server_time: datetime | None = None
        self._server_time_at = 0.0

    def frame(self, *, data: bool) -> None:
        """Note that a frame came now; ``data``: one that parses as a frame."""
        self.last_frame_at = self.monotonic()
        if data:
            self.data_at = self.last_frame_at

    def note_server_time(self, at: datetime | None) -> None:
        """Take the server's timestamp (``None``: the frame had none)."""
        if at is not None:
            self._server_time = at
            self._server_time_at = self.monotonic()

    def server_now(self) -> datetime:
        """The server's time now, from its last timestamp plus the time since it came."""
        if self._server_time is None:
            return datetime.now(UTC)
        elapsed = self.monotonic() - self._server_time_at
        return self._server_time + timedelta(seconds=max(elapsed, 0.0))

    def stale(self) -> bool:
        """Whether no frame came for two heartbeat intervals."""
        return self.monotonic() - self.last_frame_at > 2 * self.heartbeat_interval

    def age(self, at: float | None) -> float | None:
        """Seconds since the monotonic time ``at`` (never negative), ``None`` for ``None``."""
        return None if at is None else max(self.monotonic() - at, 0.0)
