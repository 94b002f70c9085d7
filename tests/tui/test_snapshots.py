"""Snapshots of the dashboard at 80x24 and 160x48 with a fixed feed (pinned TZ, no blink)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from textual.pilot import Pilot

from nilemetrics.tui.app import NileMetricsApp
from tests.tui.recorded import T0, RecordedFeed, metrics_frame, standard_events, wait_until

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


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 48)])
def test_dashboard_snapshot(snap_compare: Any, make_app: MakeApp, width: int,
                            height: int) -> None:
    """The whole dashboard, dark theme, at a small and a large terminal."""
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
    """A spike at 80x24: the Payment errors panel is red."""
    from tests.tui.recorded import errors_frame, spread_rows

    feed = _feed()
    feed.push(errors_frame(spread_rows(8, every=5)))
    app = make_app(feed)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_until(pilot, lambda: app.alerting and len(app.error_rows) == 8)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
