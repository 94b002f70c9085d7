"""Pilot tests of issue 12: every live session visible, labels that say what they count."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from textual.widgets import Digits

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.feed import Connected, Frame
from nilemetrics.tui.page_sessions import FetchError, PageSessions, parse_page_sessions
from nilemetrics.tui.panels import PANELS
from nilemetrics.tui.screens.help import HelpScreen
from nilemetrics.tui.screens.page_sessions import PageSessionsScreen
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.custom_events import CustomEvents
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.ranked_list import RankedList
from nilemetrics.tui.widgets.top_codes import TopCodes
from tests.tui.recorded import (
    T0,
    FakeMonotonic,
    RecordedFeed,
    error_row,
    errors_frame,
    metrics_frame,
    read_digits,
    screen_text,
    spread_rows,
    wait_until,
)

MakeApp = Callable[..., NileMetricsApp]


def panel_sum_on_screen(app: NileMetricsApp) -> int:
    """The page panels' numbers as drawn on screen, added up."""
    return sum(int(read_digits(app, app.query_one(f"#{panel.id}", CountPanel).query_one(Digits)))
               for panel in PANELS)


def header_live(app: NileMetricsApp) -> int:
    """The live count in the header line."""
    match = re.search(r"(\d+) live", screen_text(app).splitlines()[0])
    assert match, screen_text(app).splitlines()[0]
    return int(match.group(1))


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_panels_add_up_to_the_live_count(make_app: MakeApp, size: tuple[int, int]) -> None:
    """Read from the screen, the page panels sum to the header's live count, any page type."""
    pages = {"homepage": 9, "category": 3, "offer": 2, "product": 11, "search": 4, "other": 3,
             "product_listing": 7, "checkout": 2, "payment": 1, "payment_error": 1}
    frame = metrics_frame(homepage=9, categories={"shoes": 3}, offers={"sale": 2}, product=11,
                          search=4, other=3, checkout=2, payment=1, paymentError=1,
                          pages=pages, liveSessions=43)
    app = make_app(RecordedFeed([Connected(), frame]))
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: "43 live" in screen_text(app))
        await pilot.pause(0.1)
        assert header_live(app) == 43
        assert panel_sum_on_screen(app) == 43
        assert read_digits(app, app.query_one("#other-pages").query_one(Digits)) == "25"
        if size[0] >= 120:  # at 80 columns the names end in an ellipsis
            text = screen_text(app)
            assert "product " in text and "product_listing" in text


async def test_panels_show_a_dash_until_the_first_frame(make_app: MakeApp) -> None:
    """Before any numbers came, panels and lines show a dash, not a misleading 0."""
    app = make_app(RecordedFeed([Connected()]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        for panel in PANELS:
            assert read_digits(app, app.query_one(f"#{panel.id}").query_one(Digits)) == "-", panel
        text = screen_text(app)
        assert "— live" in text and "no data yet" in text
        assert "Now in checkout — → payment — → error page —" in text
        assert "Last hour sessions —" in text


async def test_header_names_server_clock_and_data_age(make_app: MakeApp, feed: RecordedFeed,
                                                      mono: FakeMonotonic) -> None:
    """The header says which server, the time, and how old the data is (heartbeats count)."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: "data just now" in screen_text(app))
        header = screen_text(app).splitlines()[0]
        assert "server 127.0.0.1:8000" in header and "● connected" in header
        assert "13:00:00" in header
        mono.advance(12)
        await wait_until(pilot, lambda: "data 12 s ago" in screen_text(app))
        assert "13:00:12" in screen_text(app).splitlines()[0]
        feed.push(Frame("metrics-heartbeat", {"timestamp": "2026-11-24T12:00:12Z"}))
        await wait_until(pilot, lambda: "data just now" in screen_text(app))


async def test_help_defines_every_figure(make_app: MakeApp, feed: RecordedFeed) -> None:
    """The help screen says what each panel and each hour figure counts, and the keys."""
    app = make_app(feed)
    async with app.run_test(size=(200, 70)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen)
                         and "What the dashboard shows" in screen_text(app))
        await pilot.pause(0.1)
        plain = " ".join(screen_text(app).split())
        # The help is longer than the screen with the views: read its end too.
        await pilot.press("end")
        await pilot.pause(0.1)
        plain += " " + " ".join(screen_text(app).split())
        for words in ("Other pages", "Error page", "live", "Now in", "sessions → checkout",
                      "payment errors", "failed and not paid since", "Top error codes",
                      "latest 50 of 92", "data … ago", "sparkline", "q / Ctrl+C", "s / S",
                      "2 History", "REPLAY 03:10", "3 Customer", "4 Report", "1 2 3 4",
                      "Replay: ←/→, Esc"):
            assert words in plain, words


async def test_table_title_counts_the_hour_not_the_rows(make_app: MakeApp) -> None:
    """With 92 errors in the hour and 50 rows sent, the title says "latest 50 of 92"."""
    feed = RecordedFeed([Connected(), metrics_frame(paymentErrorsLastHour=92),
                         errors_frame(spread_rows(50, every=30))])
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 50)
        await pilot.pause(0.05)
        assert "latest 50 of 92" in screen_text(app)


async def test_cursor_follows_the_newest_row_until_moved(make_app: MakeApp) -> None:
    """In a dashboard that starts empty the cursor stays on the newest row; once moved, it stays."""
    feed = RecordedFeed([Connected(), metrics_frame(), errors_frame([])])
    app = make_app(feed)
    table = app.query_one
    async with app.run_test(size=(80, 24)) as pilot:
        errors = table(ErrorTable)
        rows: list[dict[str, object]] = []
        for n in range(1, 4):
            rows = [error_row(n, T0 + timedelta(seconds=n), email=f"c{n}@example.com"), *rows]
            feed.push(errors_frame(rows))
            await wait_until(pilot, lambda n=n: errors.row_count == n)  # type: ignore[misc]
            assert errors.selected_row is not None
            assert errors.selected_row.email == f"c{n}@example.com"
        await pilot.press("down")
        assert errors.selected_row.email == "c2@example.com"  # type: ignore[union-attr]
        rows = [error_row(4, T0 + timedelta(seconds=4), email="c4@example.com"), *rows]
        feed.push(errors_frame(rows))
        await wait_until(pilot, lambda: errors.row_count == 4)
        assert errors.selected_row.email == "c2@example.com"  # type: ignore[union-attr]
        await pilot.press("up", "up")  # back on the newest: follow again
        rows = [error_row(5, T0 + timedelta(seconds=5), email="c5@example.com"), *rows]
        feed.push(errors_frame(rows))
        await wait_until(pilot, lambda: errors.row_count == 5)
        assert errors.selected_row.email == "c5@example.com"  # type: ignore[union-attr]
        await pilot.press("enter")
        await wait_until(pilot, lambda: "c5@example.com" in screen_text(app)
                         and app.screen is not app.screen_stack[0])


async def test_pause_freezes_everything_on_screen(make_app: MakeApp, feed: RecordedFeed,
                                                  mono: FakeMonotonic) -> None:
    """Paused: header numbers, hour lines, sparklines, codes and the table stay as they were."""
    app = make_app(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        await pilot.pause(0.2)
        await pilot.press("p")
        await pilot.pause(0.1)

        def frozen_part() -> list[str]:
            # Everything but the header's clock and data age, which keep telling the truth.
            lines = screen_text(app).splitlines()
            header = re.sub(r"data .*? ago|data just now|\d\d:\d\d:\d\d", "", lines[0])
            return [" ".join(header.split()), *lines[1:]]

        before = frozen_part()
        spike = spread_rows(9, end=T0 + timedelta(seconds=40), every=4)
        feed.push(metrics_frame(T0 + timedelta(seconds=40), homepage=99, checkout=7,
                                paymentErrorsLastHour=40),
                  errors_frame(spike))
        await wait_until(pilot, lambda: app.metrics.homepage == 99 and len(app.error_rows) == 9)
        mono.advance(5)
        await pilot.pause(0.3)
        assert app.alerting  # the alert still works (and rings) while paused …
        assert frozen_part() == before  # … but nothing on screen moves
        assert "data 5 s ago" in screen_text(app)
        await pilot.press("p")
        await wait_until(pilot, lambda: "99" in read_digits(
            app, app.query_one("#homepage").query_one(Digits)))
        assert "latest 9 of 40" in screen_text(app)


async def test_sort_by_any_column(make_app: MakeApp, feed: RecordedFeed) -> None:
    """`s` sorts by the next column, `S` reverses; the title and the footer say so."""
    app = make_app(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        errors = app.query_one(ErrorTable)
        await wait_until(pilot, lambda: errors.row_count == 3
                         and "q Quit" in screen_text(app))
        footer = next(line for line in screen_text(app).splitlines() if "q Quit" in line)
        assert "s Sort" in footer and "S Reverse" in footer
        await pilot.press("s")  # email, A to Z
        await wait_until(pilot, lambda: errors.sort_key == "email")
        assert [r.email for r in errors.rows_shown] == [
            "anna@example.com", "ben@example.org", "chloe@example.net"]
        await pilot.press("s")  # amount, largest first
        assert [r.amount_text for r in errors.rows_shown] == ["120.00", "59.97", "59.97"]
        assert "by Amount ↓" in screen_text(app)
        assert errors.selected_row is errors.rows_shown[0] and errors.scroll_y == 0
        await pilot.press("S")
        assert [r.amount_text for r in errors.rows_shown][-1] == "120.00"
        await pilot.press("s")  # the error code
        assert [r.error_code for r in errors.rows_shown] == [
            "card_declined", "expired_card", "processing_error"]


async def test_top_error_codes(make_app: MakeApp) -> None:
    """The codes panel lists code, count, share and last seen, most frequent first."""
    rows = [error_row(5, T0, code="card_declined"),
            error_row(4, T0 - timedelta(seconds=60), code="expired_card"),
            error_row(3, T0 - timedelta(seconds=120), code="card_declined"),
            error_row(2, T0 - timedelta(seconds=180), code="card_declined"),
            error_row(1, T0 - timedelta(seconds=240), code="expired_card")]
    app = make_app(RecordedFeed([Connected(), metrics_frame(), errors_frame(rows)]))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: len(app.query_one(TopCodes).codes) == 2)
        await pilot.pause(0.05)
        text = screen_text(app)
        assert "Top error codes" in text
        assert re.search(r"card_declined\s+3\s+60%\s+13:00", text)
        assert re.search(r"expired_card\s+2\s+40%\s+12:59", text)


async def test_codes_key_shows_the_panel_on_a_narrow_terminal(make_app: MakeApp,
                                                             feed: RecordedFeed) -> None:
    """At 80 columns the codes panel is hidden until `c` shows it."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        assert "Top error codes" not in screen_text(app)
        await pilot.press("c")
        await wait_until(pilot, lambda: "Top error codes" in screen_text(app))


@pytest.mark.parametrize("key", ["ctrl+c", "q"])
async def test_ctrl_c_and_q_quit_at_once(make_app: MakeApp, feed: RecordedFeed,
                                         key: str) -> None:
    """Ctrl-C (even in the filter box) and q end the app, no toast in between."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        if key == "ctrl+c":
            await pilot.press("slash")
        await pilot.press(key)
        await wait_until(pilot, lambda: not app.is_running)
        assert not app._notifications


async def test_notices_never_cover_the_table(make_app: MakeApp, feed: RecordedFeed) -> None:
    """A notice takes a line of its own above the table; the table's rows stay readable."""
    app = make_app(feed, notice="Welcome: this is a notice")
    async with app.run_test(size=(80, 24)) as pilot:
        errors = app.query_one(ErrorTable)
        await wait_until(pilot, lambda: errors.row_count == 3)
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.exports))
        await pilot.pause(0.05)
        notice = app.query_one("#notice")
        assert notice.region.bottom <= errors.region.y
        assert "CSV export" in screen_text(app)
        assert not app._notifications  # no toast floating over anything


async def test_demo_shop_address_stays_visible(make_app: MakeApp, feed: RecordedFeed,
                                               mono: FakeMonotonic) -> None:
    """With a shop URL (the demo) its address is on screen all the time, at 80 columns too."""
    app = make_app(feed, shop_url="http://127.0.0.1:8001")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        mono.advance(120)
        await pilot.pause(0.2)
        assert "Demo shop: http://127.0.0.1:8001" in screen_text(app)


def fake_sessions(calls: list[list[str]]) -> Any:
    """A sessions fetcher answering from memory and noting what it was asked."""

    async def fetch(page_types: list[str]) -> PageSessions:
        calls.append(page_types)
        return parse_page_sessions({"total": 3, "sessions": [
            {"sessionId": "s1", "pageType": "product", "pageIdentifier": "mug-42",
             "enteredAt": "2026-11-24T11:57:30Z", "secondsOnPage": 150.0,
             "email": "ann@example.com", "previousPageType": "category",
             "previousPageIdentifier": "kitchen"},
            {"sessionId": "s2", "pageType": "search", "pageIdentifier": None,
             "enteredAt": "2026-11-24T11:59:50Z", "secondsOnPage": 10.0, "email": None,
             "previousPageType": None, "previousPageIdentifier": None},
        ]})

    return fetch


async def test_a_page_panel_lists_its_live_sessions(make_app: MakeApp,
                                                    feed: RecordedFeed) -> None:
    """Enter (or a click) on a page panel lists the sessions behind it; Esc goes back."""
    calls: list[list[str]] = []
    app = make_app(feed)
    app._sessions_fetcher = fake_sessions(calls)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        app.query_one("#other-pages").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PageSessionsScreen)
                         and "ann@example.com" in screen_text(app))
        assert calls == [["product", "search"]]
        text = screen_text(app)
        assert "Live sessions · Other pages" in text
        assert re.search(r"product · mug-42\s+12:57:30\s+2 min 30 s\s+ann@example.com\s+"
                         r"category · kitchen", text)
        assert re.search(r"search\s+12:59:50\s+10 s\s+—\s+—", text)
        assert "3 live, the 2 longest listed" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, PageSessionsScreen))
        await pilot.click("#homepage")
        await wait_until(pilot, lambda: isinstance(app.screen, PageSessionsScreen))
        await wait_until(pilot, lambda: len(calls) == 2)
        assert calls[-1] == ["homepage"]


async def test_page_sessions_say_why_they_are_missing(make_app: MakeApp,
                                                      feed: RecordedFeed) -> None:
    """A server that cannot list sessions gets a plain sentence, not a crash."""

    async def failing(_pages: list[str]) -> PageSessions:
        raise FetchError("this server does not list sessions (an older version)")

    app = make_app(feed)
    app._sessions_fetcher = failing
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        app.query_one("#checkout").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "older version" in screen_text(app))


async def test_custom_events_panel_lists_names_most_first(make_app: MakeApp) -> None:
    """The events panel shows each name of customEvents with its count, most first."""
    frames = [Connected(),
              metrics_frame(customEvents={"add_to_cart": 12, "signup": 3}),
              errors_frame([])]
    app = make_app(RecordedFeed(frames))
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.query_one(CustomEvents)
        await wait_until(pilot, lambda: panel.items == (("add_to_cart", 12), ("signup", 3)))
        await pilot.pause(0.05)
        text = screen_text(app)
        assert "Events, last 5 min" in text
        assert re.search(r"add_to_cart\s+12", text)
        assert re.search(r"signup\s+3", text)
        assert panel.border_subtitle == "15 in all"


async def test_custom_events_panel_without_events_says_none(make_app: MakeApp) -> None:
    """A server with no custom events in the window: the panel says none."""
    app = make_app(RecordedFeed([Connected(), metrics_frame(customEvents={}), errors_frame([])]))
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.query_one(CustomEvents)
        await wait_until(pilot, lambda: panel.query_one(RankedList).known)
        await pilot.pause(0.05)
        assert panel.items == ()
        assert panel.query_one(RankedList).render().plain == "none"
