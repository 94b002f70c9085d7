"""The dashboard's clocks: the server's time, staleness and ages (no app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nilemetrics.tui.feed_clock import FeedClock
from tests.tui.recorded import T0, FakeMonotonic


def _clock(mono: FakeMonotonic, heartbeat: float = 15.0) -> FeedClock:
    return FeedClock(mono, lambda: T0, heartbeat)


def test_server_now_runs_on_from_the_last_timestamp() -> None:
    """Between frames the server's time moves on with the monotonic clock, not the wall clock."""
    mono = FakeMonotonic()
    clock = _clock(mono)
    clock.note_server_time(T0)
    mono.advance(12.5)
    assert clock.server_now() == T0 + timedelta(seconds=12.5)
    clock.note_server_time(None)  # a frame without a timestamp changes nothing
    assert clock.server_now() == T0 + timedelta(seconds=12.5)
    clock.note_server_time(T0 + timedelta(seconds=10))  # the server's clock wins
    assert clock.server_now() == T0 + timedelta(seconds=10)


def test_server_now_before_any_timestamp_is_the_local_utc_time() -> None:
    """Until the server said what time it is, its time is taken to be ours."""
    clock = _clock(FakeMonotonic())
    before = datetime.now(UTC)
    now = clock.server_now()
    assert before <= now <= datetime.now(UTC)


def test_stale_after_two_heartbeat_intervals_without_a_frame() -> None:
    """No frame, not even a malformed one, for two intervals is stale; any frame ends it."""
    mono = FakeMonotonic()
    clock = _clock(mono, heartbeat=5.0)
    mono.advance(10.0)
    assert not clock.stale()
    mono.advance(0.5)
    assert clock.stale()
    clock.frame(data=False)
    assert not clock.stale()
    clock.heartbeat_interval = 1.0
    mono.advance(2.5)
    assert clock.stale()


def test_data_age_counts_only_frames_with_data() -> None:
    """The data's age runs from the last well-formed frame; a malformed one does not reset it."""
    mono = FakeMonotonic()
    clock = _clock(mono)
    assert clock.data_at is None and clock.age(clock.data_at) is None
    clock.frame(data=True)
    mono.advance(7.0)
    clock.frame(data=False)
    assert clock.age(clock.data_at) == 7.0
    assert clock.age(mono.now + 3.0) == 0.0  # never negative
