"""Pilot tests of the dashboard on a recorded feed."""

from __future__ import annotations

import csv
import stat
from collections.abc import Callable
from datetime import timedelta

from textual.widgets import Digits, Sparkline

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.feed import AuthRefused, BadFrame, Connected, Connecting, Disconnected, Frame
from nilemetrics.tui.screens.error_detail import ErrorDetailScreen
from nilemetrics.tui.screens.help import HelpScreen
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.error_table import ErrorTable, column_widths
from nilemetrics.tui.widgets.list_panel import ListPanel
from nilemetrics.tui.widgets.payment_line import PaymentLine
from nilemetrics.tui.widgets.status_bar import StatusBar
from tests.tui.recorded import (
    T0,
    FakeMonotonic,
    RecordedFeed,
    error_row,
    errors_frame,
    metrics_frame,
    screen_text,
    spread_rows,
    wait_until,
)

MakeApp = Callable[..., NileMetricsApp]


def panel(app: NileMetricsApp, name: str) -> CountPanel:
    """A count panel by id."""
    return app.query_one(f"#{name}", CountPanel)


def shown_count(app: NileMetricsApp, name: str) -> str:
    """The digits a panel shows."""
    return panel(app, name).query_one(Digits).value


def table(app: NileMetricsApp) -> ErrorTable:
    """The payment-error table."""
    return app.query_one(ErrorTable)


def notices(app: NileMetricsApp) -> list[str]:
    """Texts of the notices shown so far (on the notice line, not as toasts)."""
    return list(app.notice_log)


async def test_counts_lists_and_funnel_show_the_snapshot(make_app: MakeApp,
                                                         feed: RecordedFeed) -> None:
    """The first metrics frame fills every panel, the identifier lists and the funnel."""
    app = make_app(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12")
        # The screen was laid out before the first frame: wait for the repaint.
        await wait_until(pilot, lambda: "42 live" in screen_text(app))
        assert shown_count(app, "categories") == "11"
        assert shown_count(app, "offers") == "5"
        assert shown_count(app, "checkout") == "3"
        assert shown_count(app, "payment") == "2"
        assert shown_count(app, "error-page") == "1"
        assert shown_count(app, "other-pages") == "8"
        assert app.query_one("#categories", ListPanel).items[0] == ("shoes", 5)
        assert app.query_one("#other-pages", ListPanel).items == (("product", 6), ("search", 2))
        text = screen_text(app)
        assert "shoes" in text and "black-friday" in text
        assert "Now in checkout" in text and "→ error page" in text
        assert ("Last hour 120 sessions → 19 checkout −84% → 16 payment −16% → 14 paid −12%"
                in text)
        assert "87.5% of payment outcomes paid" in text
        assert "42 live" in text
        assert "server 127.0.0.1:8000" in text
        assert "data just now" in text
        assert "13:00:00" in text  # the clock: 12:00 UTC shown in Europe/Berlin


async def test_counts_and_sparklines_follow_new_frames(make_app: MakeApp,
                                                       feed: RecordedFeed) -> None:
    """A later frame changes the number and extends the 10-minute sparkline."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12")
        feed.push(metrics_frame(T0 + timedelta(seconds=30), homepage=7, checkout=9))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "7")
        assert shown_count(app, "checkout") == "9"
        spark = panel(app, "homepage").query_one(Sparkline)
        await wait_until(pilot, lambda: list(spark.data or []) == [12, 12, 12, 7])
        assert list(panel(app, "checkout").query_one(Sparkline).data or []) == [3, 3, 3, 9]


async def test_sparkline_keeps_ten_minutes(make_app: MakeApp, feed: RecordedFeed) -> None:
    """Frames older than ten minutes fall out of the sparkline."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12")
        for minute in range(1, 13):
            feed.push(metrics_frame(T0 + timedelta(minutes=minute), homepage=minute))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12"
                         and app.metrics.last_updated == T0 + timedelta(minutes=12))
        data = list(panel(app, "homepage").query_one(Sparkline).data or [])
        assert len(data) == 60
        assert data[0] == 2 and data[-1] == 12  # the span starts at 12:02, holding 12:02’s 2


async def test_rows_arrive_newest_first_and_keep_the_selection(make_app: MakeApp,
                                                               feed: RecordedFeed) -> None:
    """New rows go on top; the row the user selected stays selected."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        assert [row.email for row in table(app).rows_shown] == [
            "anna@example.com", "ben@example.org", "chloe@example.net"]
        await pilot.press("down")
        assert table(app).selected_row is not None
        assert table(app).selected_row.email == "ben@example.org"  # type: ignore[union-attr]
        rows = [error_row(4, T0 + timedelta(seconds=5), email="dora@example.com")]
        rows += [row.raw for row in app.error_rows]
        feed.push(errors_frame(rows))
        await wait_until(pilot, lambda: table(app).row_count == 4)
        assert table(app).rows_shown[0].email == "dora@example.com"
        assert table(app).selected_row.email == "ben@example.org"  # type: ignore[union-attr]
        assert table(app).cursor_row == 2


def _fits_the_room(table: ErrorTable) -> bool:
    """Whether the columns are as wide as the room the table has now asks for."""
    room = table.scrollable_content_region.width - 2  # the two cells kept for a scrollbar
    wanted = column_widths(room, table.cell_padding, table.rows_shown)
    return {str(key.value): column.width for key, column in table.columns.items()} == wanted


async def test_columns_refit_when_the_rows_start_to_scroll(make_app: MakeApp) -> None:
    """Rows that make the table scroll refit its columns at once, not at the next resize."""
    feed = RecordedFeed([Connected(), metrics_frame(), errors_frame(spread_rows(2, every=5))])
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ErrorTable)
        await wait_until(pilot, lambda: table.row_count == 2 and _fits_the_room(table))
        assert not table.show_vertical_scrollbar
        before = dict(table.columns)
        feed.push(errors_frame(spread_rows(8, every=5)))
        await wait_until(pilot, lambda: table.row_count == 8 and table.show_vertical_scrollbar)
        await wait_until(pilot, lambda: _fits_the_room(table),
                         what="the columns refitted beside the scrollbar")
        assert sum(c.width for c in table.columns.values()) == sum(
            c.width for c in before.values()) - 2


async def test_table_shows_readable_cells(make_app: MakeApp, feed: RecordedFeed) -> None:
    """Amounts have two decimals, items their count and names, browsers a readable name."""
    app = make_app(feed)
    async with app.run_test(size=(200, 60)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        text = screen_text(app)
        assert "59.97" in text and "120.00" in text
        assert "2 · Tea mug 9.9" in text
        assert "Chrome 131 · Windows" in text and "Safari 17 · iOS" in text
        assert "12:59:40" in text  # 11:59:40 UTC in Berlin
        assert "+49 170 1234567" in text and "203.0.113.0" in text


async def test_narrow_terminal_uses_ellipsis(make_app: MakeApp, feed: RecordedFeed) -> None:
    """At 80 columns long values end in an ellipsis instead of being cut silently."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        # The screen was laid out before the first frame: wait for the repaint.
        await wait_until(pilot, lambda: "42 live" in screen_text(app))
        text = screen_text(app)
        assert "summer-hats-a…" in text
        assert "Your card was…" in text or "Your card was de…" in text
        # The hour's lines fit 80 columns whole.
        for start in ("Now in", "Last hour", "Payments 1h"):
            line = next(line for line in text.splitlines() if line.startswith(f" {start}"))
            assert not line.rstrip().endswith("…"), line


async def test_filter_by_email_code_or_message(make_app: MakeApp, feed: RecordedFeed) -> None:
    """`/` filters the table; Escape clears the filter."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.press("slash", *"expired")
        await wait_until(pilot, lambda: table(app).row_count == 1)
        assert table(app).rows_shown[0].email == "ben@example.org"
        assert "filter “expired”: 1 of 3" in str(table(app).border_subtitle)
        await pilot.press("ctrl+a", "ctrl+k", *"ANNA@")
        await wait_until(pilot, lambda: [r.email for r in table(app).rows_shown]
                         == ["anna@example.com"])
        await pilot.press("ctrl+a", "ctrl+k", *"processing")
        await wait_until(pilot, lambda: [r.email for r in table(app).rows_shown]
                         == ["chloe@example.net"])
        await pilot.press("escape")
        await wait_until(pilot, lambda: table(app).row_count == 3)
        assert table(app).has_focus


async def test_filter_applies_to_rows_that_arrive_later(make_app: MakeApp,
                                                        feed: RecordedFeed) -> None:
    """A new row that does not match the filter stays hidden."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.press("slash", *"expired", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 1)
        rows = [error_row(9, T0, email="zed@example.com")] + [r.raw for r in app.error_rows]
        feed.push(errors_frame(rows))
        await wait_until(pilot, lambda: len(app.error_rows) == 4)
        assert [r.email for r in table(app).rows_shown] == ["ben@example.org"]


async def test_pause_freezes_and_resumes_with_latest(make_app: MakeApp,
                                                     feed: RecordedFeed) -> None:
    """`p` freezes the screen (and says so); pressing it again shows the latest state."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12")
        await pilot.press("p")
        assert app.query_one(StatusBar).has_class("-paused")
        assert "PAUSED" in screen_text(app)
        feed.push(metrics_frame(T0 + timedelta(seconds=5), homepage=99),
                  errors_frame([error_row(7, T0, email="new@example.com")]))
        await wait_until(pilot, lambda: app.metrics.homepage == 99 and len(app.error_rows) == 1)
        assert shown_count(app, "homepage") == "12"
        assert table(app).row_count == 3
        await pilot.press("p")
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "99")
        assert [r.email for r in table(app).rows_shown] == ["new@example.com"]
        assert "PAUSED" not in screen_text(app)


async def test_enter_opens_the_error_detail(make_app: MakeApp, feed: RecordedFeed) -> None:
    """Enter on a row shows everything stored for it, Escape goes back."""
    app = make_app(feed)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        table(app).focus()
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorDetailScreen)
                         and "ben@example.org" in screen_text(app))
        text = screen_text(app)
        assert "ben@example.org" in text
        assert "Green tea" in text and "39.99" in text
        assert "insufficient_funds" in text  # nested client error details
        assert "Safari 17 · iOS" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ErrorDetailScreen))


async def test_click_on_a_row_opens_the_detail(make_app: MakeApp, feed: RecordedFeed) -> None:
    """The mouse works too: clicking the selected row opens its detail."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.click(ErrorTable, offset=(5, 2))  # the first row is already highlighted
        # The detail is shown once it is painted, not as soon as it is pushed (under load
        # the first paint comes a little later).
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorDetailScreen)
                         and "anna@example.com" in screen_text(app))


async def test_export_writes_visible_rows_and_says_where(make_app: MakeApp,
                                                         feed: RecordedFeed) -> None:
    """`e` writes the filtered rows to a CSV file and the notice names the file."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.press("slash", *"@example.", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.press("ctrl+a")  # nothing: the table has focus
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.exports))
        path = app.exports[0]
        assert path.parent == app.config.export_dir
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # emails: owner only
        assert any(str(path) in n and "3 row" in n for n in notices(app))
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["email"] for r in rows] == [
            "anna@example.com", "ben@example.org", "chloe@example.net"]
        first = rows[0]
        assert first["amount"] == "59.97"
        assert first["phone"] == "'+49 170 1234567"  # no formula injection in spreadsheets
        assert first["item_count"] == "2"
        assert first["items"] == "2 · Tea mug 9.99, Green tea 39.99"
        assert first["error_code"] == "card_declined"
        assert first["browser"] == "Chrome 131 · Windows"
        assert first["time"] == "2026-11-24T11:59:40+00:00"
        assert "insufficient_funds" in first["error_details"]


async def test_export_of_a_filtered_table(make_app: MakeApp, feed: RecordedFeed) -> None:
    """Only the rows the filter shows are exported."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        await pilot.press("slash", *"expired", "enter", "e")
        await wait_until(pilot, lambda: bool(app.exports))
        with app.exports[0].open(newline="", encoding="utf-8") as handle:
            assert [r["email"] for r in csv.DictReader(handle)] == ["ben@example.org"]


async def test_spike_turns_payment_line_red_and_rings_once(make_app: MakeApp,
                                                           feed: RecordedFeed) -> None:
    """More than the threshold of errors in a minute: red payment line, one bell per spike."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        errors_panel = app.query_one(PaymentLine)
        await wait_until(pilot, lambda: table(app).row_count == 3)
        assert not errors_panel.has_class("-alert")
        spike = spread_rows(6, every=5)
        feed.push(errors_frame(spike))
        await wait_until(pilot, lambda: errors_panel.has_class("-alert"))
        assert app.bells == 1
        assert "(6 last min)" in screen_text(app)
        feed.push(errors_frame(spread_rows(7, every=5)))
        await wait_until(pilot, lambda: len(app.error_rows) == 7)
        assert app.bells == 1  # still the same spike
        # A minute later (server time) the spike is over.
        feed.push(metrics_frame(T0 + timedelta(seconds=90)))
        await wait_until(pilot, lambda: not errors_panel.has_class("-alert"))
        feed.push(errors_frame(spread_rows(6, end=T0 + timedelta(seconds=90), every=5)))
        await wait_until(pilot, lambda: errors_panel.has_class("-alert"))
        assert app.bells == 2


async def test_threshold_is_configurable(make_app: MakeApp, feed: RecordedFeed) -> None:
    """With --alert-errors-per-min 10, six errors a minute is no spike."""
    app = make_app(feed, alert_errors_per_min=10)
    async with app.run_test(size=(80, 24)) as pilot:
        feed.push(errors_frame(spread_rows(6, every=5)))
        await wait_until(pilot, lambda: len(app.error_rows) == 6)
        assert not app.query_one(PaymentLine).has_class("-alert")
        assert app.bells == 0


async def test_connection_states_and_countdown(make_app: MakeApp, mono: FakeMonotonic) -> None:
    """Header: connecting, unreachable with a countdown, connected, reconnecting."""
    feed = RecordedFeed([Connecting(1)])
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: "connecting" in status.state_text())
        feed.push(Disconnected("connection refused", 4.0, unreachable=True))
        await wait_until(pilot, lambda: status.state_text()
                         == "✕ server unreachable · reconnecting in 4s")
        mono.advance(2.5)
        # The state first, then its paint (a repaint comes a moment later under load).
        await wait_until(pilot, lambda: status.retry_in == 2)
        await wait_until(
            pilot, lambda: "server unreachable · reconnecting in 2s" in screen_text(app)
        )
        feed.push(Connecting(2), Connected(), metrics_frame())
        await wait_until(pilot, lambda: status.state_text() == "● connected")
        await wait_until(pilot, lambda: "● connected" in screen_text(app))
        feed.push(Disconnected("connection lost", 1.0, unreachable=False))
        await wait_until(pilot, lambda: status.state_text()
                         == "○ connection lost · reconnecting in 1s")
        # On reconnect, the fresh snapshot replaces what was shown.
        feed.push(Connecting(3), Connected(), metrics_frame(homepage=77))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "77")
        assert status.state == "connected"


async def test_auth_refused_is_a_clear_message(make_app: MakeApp) -> None:
    """An auth refusal shows in the header and as a notice naming the fix."""
    feed = RecordedFeed([Connecting(1), AuthRefused("the server refused the token (close 1008)")])
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: status.state == "refused")
        feed.end()
        await pilot.pause(0.05)
        assert status.state == "refused"
        assert "auth refused" in screen_text(app)
        assert any("--token" in n for n in notices(app))


async def test_stale_after_two_heartbeat_intervals(make_app: MakeApp, feed: RecordedFeed,
                                                   mono: FakeMonotonic) -> None:
    """No frame for two heartbeat intervals marks the data stale; a heartbeat clears it."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: table(app).row_count == 3)
        mono.advance(29)
        await pilot.pause(0.1)
        assert not status.stale
        mono.advance(2)
        await wait_until(pilot, lambda: status.stale)
        await wait_until(pilot, lambda: "STALE" in screen_text(app))
        feed.push(Frame("metrics-heartbeat", {"timestamp": "2026-11-24T12:00:31Z"}))
        await wait_until(pilot, lambda: not status.stale)


async def test_heartbeat_interval_from_server_sets_stale_threshold(
        make_app: MakeApp, feed: RecordedFeed, mono: FakeMonotonic) -> None:
    """A heartbeat announcing a 5 s interval makes 10 s of silence stale, not 30 s."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: table(app).row_count == 3)
        feed.push(Frame("metrics-heartbeat",
                        {"timestamp": "2026-11-24T12:00:00Z", "intervalSeconds": 5}))
        await pilot.pause(0.1)
        mono.advance(9)
        await pilot.pause(0.1)
        assert not status.stale
        mono.advance(2)
        await wait_until(pilot, lambda: status.stale)


async def test_malformed_and_unknown_frames_are_ignored(make_app: MakeApp,
                                                        feed: RecordedFeed) -> None:
    """Bad frames are skipped with a notice; the dashboard keeps working."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: table(app).row_count == 3)
        feed.push(
            BadFrame("not JSON (JSONDecodeError)"),
            Frame("totally-new-event", {"x": 1}),
            Frame("metrics-update", [1, 2, 3]),
            Frame("payment-errors-update", {"rows": []}),
            Frame("metrics-update", {"homepage": "many", "categories": ["x"], "lastUpdated": 5}),
        )
        await wait_until(pilot, lambda: app.ignored_frames == 4)
        assert any("Ignored a frame" in n for n in notices(app))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "0")
        feed.push(metrics_frame(homepage=5))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "5")
        assert table(app).row_count == 3


async def test_help_lists_the_keys(make_app: MakeApp, feed: RecordedFeed) -> None:
    """`?` shows the keys; Escape closes the help."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("end")  # the keys come after the figures
        await wait_until(pilot, lambda: "filter errors" in screen_text(app))
        text = screen_text(app)
        for words in ("filter errors", "pause updates", "export", "quit"):
            assert words in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_q_quits(make_app: MakeApp, feed: RecordedFeed) -> None:
    """`q` ends the app."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running)


async def test_light_theme_toggle(make_app: MakeApp, feed: RecordedFeed) -> None:
    """`t` switches to the built-in light theme and back."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"


FIRING = [{"rule": "payment errors", "metric": "payment_errors", "value": 7.0,
           "threshold": 5.0, "direction": "above", "windowSeconds": 300.0,
           "since": "2026-11-24T11:58:00Z"}]


async def test_header_shows_firing_alerts_and_hides_them_when_resolved(
    make_app: MakeApp, feed: RecordedFeed
) -> None:
    """A metrics-update with firing alerts puts them in the header; without, they go."""
    app = make_app(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "12")
        bar = app.query_one(StatusBar)
        assert not bar.has_class("-alerting") and "⚠" not in screen_text(app)
        feed.push(metrics_frame(alerts=FIRING))
        await wait_until(pilot, lambda: bar.has_class("-alerting"))
        assert "⚠ payment errors: 7 > 5" in screen_text(app)
        assert bar.query_one("#alerts-badge").tooltip == (
            "payment errors: payment_errors 7 > 5 since 11:58:00 UTC")
        rate = {"rule": "conversion", "metric": "payment_success_rate", "value": 0.5,
                "threshold": 0.8, "direction": "below"}
        feed.push(metrics_frame(alerts=[*FIRING, rate]))
        await wait_until(pilot, lambda: "⚠ 2 alerts: payment errors, conversion"
                         in screen_text(app))
        assert bar.alerts[1].condition_text == "50% < 80%"
        feed.push(metrics_frame(alerts=[]))
        await wait_until(pilot, lambda: not bar.has_class("-alerting"))
        assert "⚠" not in screen_text(app)


async def test_a_server_without_alerts_is_shown_as_before(
    make_app: MakeApp, feed: RecordedFeed
) -> None:
    """No ``alerts`` field (an older server) or an odd one: no badge, no complaint."""
    app = make_app(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        feed.push(metrics_frame(homepage=30, alerts="nonsense"))
        await wait_until(pilot, lambda: shown_count(app, "homepage") == "30")
        assert app.query_one(StatusBar).alerts == ()
        assert "⚠" not in screen_text(app) and notices(app) == []
