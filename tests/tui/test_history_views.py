"""Pilot tests of the History, Replay, Customer and Report views on recorded endpoint answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.widgets import Digits

from nilemetrics.protocol.history import Step
from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.panels import PANELS_BY_ID
from nilemetrics.tui.screens.customer import CustomerScreen
from nilemetrics.tui.screens.history import HistoryScreen
from nilemetrics.tui.screens.live import LiveScreen
from nilemetrics.tui.screens.replay import ReplayScreen
from nilemetrics.tui.screens.report import ReportScreen
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.status_bar import StatusBar
from tests.tui.recorded import T0, RecordedFeed, read_digits, screen_text, wait_until
from tests.tui.recorded_api import ANN, ANN_EARLIER, RecordedApi, history_body, minute_point

MakeApp = Callable[..., NileMetricsApp]


async def test_sparklines_start_with_the_servers_last_ten_minutes(
        make_app: MakeApp, feed: RecordedFeed, api: RecordedApi) -> None:
    """On connect the sparklines are preloaded from GET /history?step=1m and span 10 min."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.histories_preloaded, what="preloaded")
        assert api.requests[0] == (
            "/history?since=2026-11-24T11%3A50%3A00Z&until=2026-11-24T12%3A00%3A00Z&step=1m")
        values = app.histories["homepage"].values(T0)
        assert len(values) == 60  # 10 min of 10 s buckets, the current one last
        # Each minute's value repeats over its six buckets; the last is the frame's.
        minutes = [minute_point(T0 - timedelta(minutes=10 - i)).pages["homepage"]
                   for i in range(10)]
        assert values[:59] == [float(v) for v in minutes for _ in range(6)][1:]
        assert values[59] == 12.0
        checkout = app.histories["checkout"].values(T0)
        assert checkout[-2] == PANELS_BY_ID["checkout"].count_pages(
            minute_point(T0 - timedelta(minutes=1)).pages)
        await wait_until(pilot, lambda: "−10 min … now" in screen_text(app))


async def test_an_older_server_leaves_the_sparklines_as_they_were(
        make_app: MakeApp, feed: RecordedFeed) -> None:
    """Without /history (404) nothing is preloaded and nothing complains."""
    app = make_app(feed)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.preload_error is not None)
        assert not app.histories_preloaded
        assert app.preload_error == "this server has no /history (an older version)"
        assert app.notice_log == []
        assert len(app.histories["homepage"].values(T0)) == 1


async def test_history_charts_cursor_and_ranges(make_app: MakeApp, feed: RecordedFeed,
                                                api: RecordedApi) -> None:
    """2 shows the last hour per minute; ←/→ read a bucket; d/w/m ask for other ranges."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        assert api.requests[-1] == (
            "/history?since=2026-11-24T11%3A01%3A00Z&until=2026-11-24T12%3A01%3A00Z&step=1m")
        assert screen.history is not None and len(screen.history.points) == 60
        # The cursor starts on the newest bucket: 12:00 UTC, 13:00 in Berlin.
        point = minute_point(T0)
        text = screen_text(app)
        assert f"Live sessions: {point.live_sessions}" in text
        assert f"Page visits: {point.page_visits}" in text
        assert "2026-11-24 13:00 (1m) · live" in text
        await pilot.press("left", "left")
        earlier = minute_point(T0 - timedelta(minutes=2))
        await wait_until(pilot, lambda: "2026-11-24 12:58 (1m)" in screen_text(app))
        text = screen_text(app)
        assert f"live {earlier.live_sessions} (homepage {earlier.pages['homepage']}, " in text
        assert f"· page visits {earlier.page_visits}" in text
        assert f"Payment successes: {earlier.payment_successes}" in text
        for key, step, hours in (("d", Step.FIVE_MINUTES, 24), ("w", Step.HOUR, 168),
                                 ("m", Step.HOUR, 720)):
            await pilot.press(key)
            await wait_until(pilot, lambda step=step: screen.history is not None
                             and screen.history.step == step)
            assert f"step={step.value}" in api.requests[-1]
            assert len(screen.history.points) == hours * 60 * 60 // {
                Step.FIVE_MINUTES: 300, Step.HOUR: 3600}[step]
            assert f"last {screen.range.label} in {step.value} buckets" in screen_text(app)
        assert "h 1h  d 24h  w 7d  m 30d" in screen_text(app).splitlines()[-1]


async def test_enter_replays_a_minute_and_escape_returns_live(
        make_app: MakeApp, feed: RecordedFeed, api: RecordedApi) -> None:
    """Enter on 03:10 opens Replay: the snapshot's numbers, the minute's errors, ←/→ step."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        live = app.screen
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None)
        await pilot.press(*["left"] * 5, "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayScreen)
                         and app.screen.loaded_at is not None)
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        at = T0 - timedelta(minutes=5)
        assert replay.at == at
        # The numbers as the minute ended: the next minute's sample.
        assert "/history/snapshot?at=2026-11-24T11%3A56%3A00Z" in api.requests
        assert "/payment-errors?until=2026-11-24T11%3A56%3A00Z&limit=50" in api.requests
        await wait_until(pilot, lambda: "REPLAY 12:55 · 2026-11-24" in screen_text(app))
        homepage = minute_point(at + timedelta(minutes=1)).pages["homepage"]
        await wait_until(pilot, lambda: read_digits(
            app, replay.query_one("#homepage").query_one(Digits)) == str(homepage))
        assert replay.query_one(StatusBar).replay.startswith("REPLAY 12:55")
        assert "connected" not in screen_text(app).splitlines()[0]
        assert "−10 min … 12:55" in screen_text(app)
        await pilot.press("left")
        await wait_until(pilot, lambda: replay.loaded_at == at - timedelta(minutes=1))
        await wait_until(pilot, lambda: "REPLAY 12:54" in screen_text(app))
        homepage = minute_point(at).pages["homepage"]
        await wait_until(pilot, lambda: read_digits(
            app, replay.query_one("#homepage").query_one(Digits)) == str(homepage))
        # Never past the server's now.
        await pilot.press(*["right"] * 8)
        await wait_until(pilot, lambda: replay.loaded_at == T0)
        assert replay.at == T0
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is live)
        assert app.current_mode == "live"
        assert "REPLAY" not in screen_text(app)
        assert "● connected" in screen_text(app)


async def test_replay_opens_at_the_configured_minute(make_app: MakeApp, feed: RecordedFeed,
                                                     api: RecordedApi) -> None:
    """`watch --at` (replay_at) starts in replay; its error table is the hour up to then."""
    at = datetime(2026, 11, 24, 3, 10, 30, tzinfo=UTC)
    app = make_app(feed, api=api, replay_at=at)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayScreen)
                         and app.screen.loaded_at is not None)
        assert app.screen.at == at.replace(second=0)
        await wait_until(pilot, lambda: "REPLAY 04:10 · 2026-11-24" in screen_text(app))
        table = app.screen.query_one(ErrorTable)
        assert table.rows_shown and all(
            row.at is not None and row.at < at.replace(second=0) + timedelta(minutes=1)
            for row in table.rows_shown)
        assert {row.error_code for row in table.rows_shown} == {"card_declined",
                                                                "expired_card"}
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, LiveScreen)
                         and not isinstance(app.screen, ReplayScreen))


async def test_j_on_an_error_row_shows_the_customers_journey(
        make_app: MakeApp, feed: RecordedFeed, api: RecordedApi) -> None:
    """j on a payment error opens Customer: the person's sessions and that session's journey."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(ErrorTable).row_count == 3)
        row = app.query_one(ErrorTable).selected_row
        assert row is not None and row.email == "anna@example.com"
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen)
                         and app.screen.journey is not None)
        session_id = row.raw["session_id"]
        assert f"/sessions/{session_id}?" in api.requests
        assert "/sessions?email=anna%40example.com" in api.requests
        text = screen_text(app)
        assert "12:57:20  ✕ attempt 1 failed: card_declined “Your card was declined” · 59.97" in (
            text)
        assert "left on payment_error without paying" in text


async def test_typing_an_email_lists_sessions_and_a_timeline(
        make_app: MakeApp, feed: RecordedFeed, api: RecordedApi) -> None:
    """An email typed on Customer lists both sessions; the newest's journey is a timeline."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen))
        await pilot.press(*"ann@example.com", "enter")
        screen = app.screen
        assert isinstance(screen, CustomerScreen)
        await wait_until(pilot, lambda: screen.journey is not None)
        assert screen.found is not None and [s.session_id for s in screen.found.sessions] == [
            ANN, ANN_EARLIER]
        text = screen_text(app)
        assert "2 session(s) of ann@example.com, newest first" in text
        assert re.search(r"2026-11-24 12:51\s+ended\s+payment_error\s+5\s+1\s+2\s+no", text)
        assert re.search(r"2026-11-22 13:00\s+ended\s+thank-you\s+4\s+1\s+0\s+yes", text)
        assert "Safari 17 · iOS · mobile · 2026-11-24 12:51:00 → 13:00:00 · total 9 min 00 s" in (
            text)
        lines = [line.strip("│ ") for line in text.splitlines()]
        timeline = [line for line in lines if re.match(r"\d\d:\d\d:\d\d  ", line)]
        assert [line[10:] for line in timeline] == [
            "· homepage  45 s",
            "· category · teapots  2 min 10 s",
            "· product · cast-iron-teapot  2 min 05 s",
            "· checkout  1 min 00 s",
            "▸ checkout started · 59.97 · card · 1 item(s)",
            "· payment  1 min 00 s",
            "▸ payment started",
            "✕ attempt 1 failed: card_declined “Your card was declined” · 59.97",
            "✕ attempt 2 failed: expired_card “Your card has expired” · 59.97",
            "· payment_error  1 min 00 s",
            "■ left on payment_error without paying",
        ]
        # Enter on the earlier session shows its journey.
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: screen.journey is not None
                         and screen.journey.session.session_id == ANN_EARLIER)
        assert f"/sessions/{ANN_EARLIER}?" in api.requests
        # Someone unknown: said so, nothing listed.
        await pilot.press("slash", *"nobody@example.com", "enter")
        await wait_until(pilot, lambda: "no sessions for nobody@example.com" in
                         screen_text(app))
        assert screen.journey is None


async def test_report_shows_the_servers_numbers_for_the_range(
        make_app: MakeApp, feed: RecordedFeed, api: RecordedApi) -> None:
    """4 reports the last 24 h from GET /report; w asks for 7 days; the figures are shown."""
    app = make_app(feed, api=api)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen)
                         and app.screen.report is not None)
        assert api.requests[-1] == (
            "/report?since=2026-11-23T12%3A00%3A00Z&until=2026-11-24T12%3A00%3A00Z")
        text = screen_text(app)
        assert "Report · last 24h · 2026-11-23 13:00 → 2026-11-24 13:00" in text
        assert re.search(r"homepage\s+420\s+31.5s", text)
        assert re.search(r"checkout\s+60\s+440 \(88.0%\)\s+12.0%", text)
        assert re.search(r"payment_error\s+9\s+37.5%", text)
        assert re.search(r"card_declined\s+21\s+15\s+899.55\s+359.82", text)
        assert "Retries: 6 of 21 failed checkouts paid later (28.6%)" in text
        assert re.search(r"success rate \(per checkout\)\s+70.6%", text)
        await pilot.press("w")
        await wait_until(pilot, lambda: "Report · last 7d · 2026-11-17" in screen_text(app))
        assert api.requests[-1] == (
            "/report?since=2026-11-17T12%3A00%3A00Z&until=2026-11-24T12%3A00%3A00Z")


async def test_an_endpoint_error_is_said_on_each_view(make_app: MakeApp,
                                                      feed: RecordedFeed) -> None:
    """A server without the endpoints: each view says so in a line, nothing crashes."""
    app = make_app(feed)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: "could not load the history: this server has no "
                         "/history (an older version)" in screen_text(app))
        await pilot.press("4")
        await wait_until(pilot, lambda: "could not load the report: this server has no "
                         "/report" in screen_text(app))
        await pilot.press("3", *"ann@example.com", "enter")
        await wait_until(pilot, lambda: "could not look it up: this server has no /sessions"
                         in screen_text(app))


def test_recorded_history_has_every_bucket() -> None:
    """The recordings hold every bucket of a range, as the contract says the server sends."""
    body = history_body(T0 - timedelta(hours=1), T0, Step.FIVE_MINUTES)
    assert [p.at for p in body.points] == [T0 - timedelta(minutes=60 - 5 * i)
                                           for i in range(12)]


async def test_history_and_report_refresh_while_shown(make_app: MakeApp, feed: RecordedFeed,
                                                      api: RecordedApi, mono: Any) -> None:
    """Shown, History asks again as time goes on and keeps the cursor on its bucket."""
    app = make_app(feed, api=api, history_refresh_seconds=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.histories_preloaded)
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await pilot.press("left", "left")
        await wait_until(pilot, lambda: screen.cursor_time() == T0 - timedelta(minutes=2))
        asked = sum(r.startswith("/history?") for r in api.requests)
        mono.advance(60)  # the server's clock moves a minute on: the window too
        await wait_until(pilot, lambda: sum(r.startswith("/history?") for r in api.requests)
                         > asked and screen.history is not None
                         and screen.history.points[-1].at == T0 + timedelta(minutes=1))
        assert screen.cursor_time() == T0 - timedelta(minutes=2)
        reports = sum(r.startswith("/report?") for r in api.requests)
        await pilot.press("4")
        await wait_until(pilot, lambda: sum(r.startswith("/report?") for r in api.requests)
                         >= reports + 2, what="the report asked again")
