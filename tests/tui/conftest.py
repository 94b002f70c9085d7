"""Fixtures for dashboard tests: pinned time zone, a recorded feed, a hand-moved clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.config import DashboardConfig
from tests.tui.recorded import T0, FakeMonotonic, RecordedFeed, standard_events
from tests.tui.recorded_api import RecordedApi


@pytest.fixture(autouse=True)
def pinned_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local: pin the zone so screens and snapshots are stable."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def mono() -> FakeMonotonic:
    """The dashboard's monotonic clock (reconnect countdown, staleness)."""
    return FakeMonotonic()


@pytest.fixture
def feed() -> RecordedFeed:
    """A recorded feed starting with a fresh subscription's frames."""
    return RecordedFeed(standard_events())


@pytest.fixture
def config(tmp_path: Path) -> DashboardConfig:
    """Dashboard settings with exports going to a temporary directory."""
    return DashboardConfig(
        url="http://127.0.0.1:8000",
        token="test-token",
        alert_errors_per_min=5,
        export_dir=tmp_path / "exports",
    )


@pytest.fixture
def api() -> RecordedApi:
    """Recorded answers of the history, journey and report endpoints."""
    return RecordedApi()


@pytest.fixture
def make_app(
    config: DashboardConfig, mono: FakeMonotonic
) -> Callable[..., NileMetricsApp]:
    """Build the app on a recorded feed with the fake clock and a fast tick."""

    def build(feed: RecordedFeed, api: RecordedApi | None = None,
              **changes: object) -> NileMetricsApp:
        cfg = DashboardConfig(**{**config.__dict__, **changes})  # type: ignore[arg-type]
        # Without recorded answers the history endpoints answer 404, as an older server's.
        recorded = api or RecordedApi(missing=True)
        return NileMetricsApp(cfg, feed.factory, monotonic=mono, tick_interval=0.1,
                              wall_clock=lambda: T0 + timedelta(seconds=mono.now - 1000.0),
                              api=recorded.client(cfg.url, cfg.token or ""))

    return build
