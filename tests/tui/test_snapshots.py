"""Snapshots of the dashboard at 80x24, 120x40 and 200x60 on a fixed feed (pinned TZ, no blink)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from textual.pilot import Pilot

from nilemetrics.tui.app import NileMetricsApp
from tests.tui.recorded import (
    T0,
    RecordedFeed,
    metrics_frame,
    screen_text,
    standard_events,
    wait_until,
)

MakeApp = Callable[..., NileMetricsApp]


def _feed() -> RecordedFeed:
    """A minute of history, then the standard snapshot."""
    events = standard_events()
    early = [metrics_frame(T0 - timedelta(seconds=s), homepage=12 - s // 20, checkout=s // 30)
             for s in (120, 90, 60, 30)]
    return RecordedFeed([events[0], *early, *events[1:]])


def _ready(app: NileMetricsApp, *, theme: str | None = None) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        if theme:
            app.theme = theme
        await wait_until(pilot, lambda: len(app.error_rows) == 3
                         and app.metrics.last_updated == T0)
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (200, 60)])
def test_dashboard_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                            height: int) -> None:
    """The whole dashboard, dark theme, at a small, a medium and a large terminal."""
    app = make_app(_feed())
    assert snap_compare(app, terminal_size=(width, height), run_before=_ready(app))


def test_dashboard_snapshot_light(snap_compare: Any, make_app: MakeApp) -> None:
    """The built-in light theme at 80x24."""
    app = make_app(_feed())
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=_ready(app, theme="textual-light"))


def test_detail_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """The error detail screen at 80x24."""
    app = make_app(_feed())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("down", "down", "enter")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "ErrorDetailScreen")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_alert_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """A spike at 80x24: the payment line is red."""
    from tests.tui.recorded import errors_frame, spread_rows

    feed = _feed()
    feed.push(errors_frame(spread_rows(8, every=5)), metrics_frame(paymentErrorsLastHour=8))
    app = make_app(feed)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: app.alerting and len(app.error_rows) == 8)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_firing_alert_header_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """A firing alert rule at 80x24: the header names it in red."""
    feed = _feed()
    feed.push(metrics_frame(alerts=[{
        "rule": "payment errors", "metric": "payment_errors", "value": 7.0, "threshold": 5.0,
        "direction": "above", "windowSeconds": 300.0, "since": "2026-11-24T11:58:00Z"}]))
    app = make_app(feed)

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await wait_until(pilot, lambda: bool(app.metrics.alerts))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_demo_paused_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """The demo at 120x40, paused: the shop's address line and the paused marks."""
    app = make_app(_feed(), shop_url="http://127.0.0.1:8001")

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("p", "s", "s")  # paused, sorted by amount
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_waiting_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """Before the first frame at 80x24: dashes, not zeros."""
    from nilemetrics.tui.feed import Connecting

    app = make_app(RecordedFeed([Connecting(1)]))

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: "connecting" in screen_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_help_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """The help screen at 120x40."""
    app = make_app(_feed())

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: "What the dashboard shows" in screen_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_page_sessions_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    """The sessions behind the Other pages panel at 80x24."""
    from tests.tui.test_figures import fake_sessions

    app = make_app(_feed())
    app._sessions_fetcher = fake_sessions([])

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app)(pilot)
        app.query_one("#other-pages").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "ann@example.com" in screen_text(app))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
