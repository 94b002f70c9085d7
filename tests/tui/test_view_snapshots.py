"""Snapshots of the History, Replay, Customer and Report views and of preloaded sparklines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.screens.customer import CustomerScreen
from nilemetrics.tui.screens.history import HistoryScreen
from nilemetrics.tui.screens.replay import ReplayScreen
from nilemetrics.tui.screens.report import ReportScreen
from tests.tui.recorded import T0, RecordedFeed, screen_text, standard_events, wait_until
from tests.tui.recorded_api import RecordedApi

MakeApp = Callable[..., NileMetricsApp]
SIZES = [(80, 24), (120, 40)]


def _ready(app: NileMetricsApp) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def ready(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: len(app.error_rows) == 3
                         and app.metrics.last_updated == T0 and app.histories_preloaded)

    return ready


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_history_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                          height: int) -> None:
    """History of the last hour, the cursor five minutes back."""
    app = make_app(RecordedFeed(standard_events()), api=RecordedApi())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None)
        await pilot.press(*["left"] * 5)
        await wait_until(pilot, lambda: "12:55 (1m)" in screen_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(width, height), run_before=run_before)


def test_history_week_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """History of the last 7 days per hour at 120x40."""
    app = make_app(RecordedFeed(standard_events()), api=RecordedApi())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None)
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None
                         and app.screen.history.step.value == "1h")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_replay_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                         height: int) -> None:
    """Replay of 03:10 UTC (04:10 in Berlin), in a payment-error burst."""
    from datetime import UTC, datetime

    app = make_app(RecordedFeed(standard_events()), api=RecordedApi(),
                   replay_at=datetime(2026, 11, 24, 3, 10, tzinfo=UTC))

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayScreen)
                         and app.screen.loaded_at is not None)
        await wait_until(pilot, lambda: "REPLAY 04:10" in screen_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(width, height), run_before=run_before)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_customer_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                           height: int) -> None:
    """A customer's two sessions and the newest one's journey."""
    app = make_app(RecordedFeed(standard_events()), api=RecordedApi())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen))
        await pilot.press(*"ann@example.com", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen)
                         and app.screen.journey is not None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(width, height), run_before=run_before)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_report_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                         height: int) -> None:
    """The report of the last 24 hours."""
    app = make_app(RecordedFeed(standard_events()), api=RecordedApi())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen)
                         and app.screen.report is not None)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(width, height), run_before=run_before)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_preloaded_sparklines_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                                       height: int) -> None:
    """The live screen right after connecting: sparklines already span 10 minutes."""
    app = make_app(RecordedFeed(standard_events()), api=RecordedApi())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(width, height), run_before=run_before)
