"""Pilot tests of the live screen: built from the panel list, fed by the app under modals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from textual.widgets import Digits, Input

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.panels import PANELS
from nilemetrics.tui.screens.help import HelpScreen
from nilemetrics.tui.screens.live import LiveScreen
from nilemetrics.tui.screens.page_sessions import PageSessionsScreen
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.list_panel import ListPanel
from tests.tui.recorded import (
    T0,
    RecordedFeed,
    metrics_frame,
    read_digits,
    screen_text,
    wait_until,
)
from tests.tui.test_figures import fake_sessions

MakeApp = Callable[..., NileMetricsApp]


async def test_the_panels_on_screen_are_the_panel_list(make_app: MakeApp,
                                                       feed: RecordedFeed) -> None:
    """The live screen shows one panel per entry, in order, titled, listing when it lists."""
    app = make_app(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        assert isinstance(app.screen, LiveScreen)
        widgets = list(app.query_one("#panels").query_children(CountPanel))
        assert [w.id for w in widgets] == [panel.id for panel in PANELS]
        assert [w.border_title for w in widgets] == [panel.title for panel in PANELS]
        assert [isinstance(w, ListPanel) for w in widgets] == [
            panel.items is not None for panel in PANELS]
        text = screen_text(app)
        assert all(f"─ {panel.title} ─" in text for panel in PANELS)


async def test_enter_on_each_panel_lists_the_sessions_it_counts(make_app: MakeApp,
                                                                feed: RecordedFeed) -> None:
    """Every panel's drill-down asks for the page types its number counts, under its title."""
    calls: list[list[str]] = []
    app = make_app(feed)
    app._sessions_fetcher = fake_sessions(calls)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        live = app.screen
        assert isinstance(live, LiveScreen)
        for panel in PANELS:
            app.query_one(f"#{panel.id}").focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, PageSessionsScreen)
                             and "ann@example.com" in screen_text(app))
            assert calls[-1] == panel.page_types(live.shown_metrics), panel.id
            assert f"Live sessions · {panel.title}" in screen_text(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: app.screen is live)
        assert calls == [["homepage"], ["category"], ["offer"], ["product", "search"],
                         ["checkout"], ["payment"], ["payment_error"]]


async def test_frames_reach_the_live_screen_while_help_is_open(make_app: MakeApp,
                                                               feed: RecordedFeed) -> None:
    """The app routes frames to the live screen, not to whatever screen is on top."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        live = app.screen
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        feed.push(metrics_frame(T0 + timedelta(seconds=20), homepage=77))
        await wait_until(pilot, lambda: live.query_one("#homepage").query_one(Digits).value
                         == "77")
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is live and read_digits(
            app, live.query_one("#homepage").query_one(Digits)) == "77")


async def test_number_keys_switch_views_listed_in_the_footer(make_app: MakeApp,
                                                              feed: RecordedFeed) -> None:
    """1–4 are in the footer and switch Live, History, Customer, Report; 1 comes back live."""
    from nilemetrics.tui.screens.customer import CustomerScreen
    from nilemetrics.tui.screens.history import HistoryScreen
    from nilemetrics.tui.screens.report import ReportScreen

    app = make_app(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3
                         and "q Quit" in screen_text(app))
        live = app.screen
        footer = screen_text(app).splitlines()[-1]
        assert "1 Live  2 History  3 Customer  4 Report" in footer
        await pilot.press("1")
        await pilot.pause(0.1)
        assert app.screen is live and app.current_mode == "live"
        for key, kind, mode in (("2", HistoryScreen, "history"), ("4", ReportScreen, "report"),
                                ("3", CustomerScreen, "customer")):
            await pilot.press(key)
            await wait_until(pilot, lambda kind=kind: isinstance(app.screen, kind))
            assert app.current_mode == mode
            if key != "3":
                assert "1 Live  2 History  3 Customer  4 Report" in (
                    screen_text(app).splitlines()[-1])
        # The Customer screen types into its search box (digits are a phone number there):
        # Esc leaves it, then the number keys are view keys again.
        await pilot.press("1")
        assert app.screen.query_one("#customer-input", Input).value == "1"
        await pilot.press("escape")
        await wait_until(pilot, lambda: "1 Live  2 History" in screen_text(app).splitlines()[-1])
        await pilot.press("1")
        await wait_until(pilot, lambda: app.screen is live)
        # The live screen kept receiving frames meanwhile.
        feed.push(metrics_frame(T0 + timedelta(seconds=20), homepage=55))
        await wait_until(pilot, lambda: read_digits(
            app, live.query_one("#homepage").query_one(Digits)) == "55")
