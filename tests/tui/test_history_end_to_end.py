"""History, replay, journeys and the report in the dashboard, against a real server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.widgets import Digits
from typer.testing import CliRunner

from nilemetrics.cli.main import app as cli
from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.config import DashboardConfig
from nilemetrics.tui.screens.customer import CustomerScreen
from nilemetrics.tui.screens.history import HistoryScreen
from nilemetrics.tui.screens.live import LiveScreen
from nilemetrics.tui.screens.replay import ReplayScreen
from nilemetrics.tui.screens.report import ReportScreen
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.status_bar import StatusBar
from tests.api.journeys import P, nested_error, post, start, visit
from tests.support import LiveServer
from tests.tui.recorded import read_digits, screen_text, wait_until

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollup tick every 50 ms (the fake clock says which minute it is)."""
    monkeypatch.setenv("NILEMETRICS_ROLLUP_INTERVAL", "0.05")


def _poll(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


def seed_history(server: LiveServer) -> str:
    """12:00 Ann browses; 12:01 (sampled on a category page) she fails once and pays; 12:02:05.

    Returns her session id once the minute 12:01 is counted in the server's history.
    """
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        ann = start(client, email="ann@example.com", phone="+49 170 1234567")
        visit(client, ann, "homepage")
        visit(client, ann, "category", "shoes")
        server.clock.advance(60)

        def sampled() -> bool:
            answer = client.get(f"{P}/history/snapshot", headers=server.auth,
                                params={"at": "2026-11-24T12:01:00Z"})
            return answer.status_code == 200 and answer.json()["liveSessions"] == 1

        _poll(sampled)
        post(client, "track/checkout-start", {
            "sessionId": ann, "totalAmount": "25.50", "paymentMethod": "card",
            "checkoutItems": [{"name": "Boot", "price": "25.50"}]})
        post(client, "track/payment-error", nested_error(ann, "card_declined", "Declined"))
        post(client, "track/payment-success", {"sessionId": ann})
        server.clock.advance(65)

        def counted() -> bool:
            answer = client.get(f"{P}/history", headers=server.auth, params={
                "since": "2026-11-24T12:01:00Z", "until": "2026-11-24T12:02:00Z"})
            return answer.status_code == 200 and answer.json()["points"][0][
                "paymentErrors"] == 1

        _poll(counted)
    return ann


def _app(server: LiveServer, tmp_path: Path, **changes: Any) -> NileMetricsApp:
    return NileMetricsApp(DashboardConfig(url=server.base_url, token=server.token,
                                          export_dir=tmp_path, **changes))


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param(
    "postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_history_replay_journey_and_report_on_a_real_server(
        server: LiveServer, tmp_path: Path) -> None:
    """Seeded history: sparklines preloaded, the chart's 12:01, its replay, Ann's journey, the
    report with the numbers of `nilemetrics report`."""
    ann = seed_history(server)
    app = _app(server, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.histories_preloaded, timeout=15,
                         what="sparklines preloaded")
        live = app.screen
        # The category panel's sparkline holds the server's minutes, in its 10 s bars: 12:00
        # (nobody live when sampled), 12:01 (Ann on shoes), and the ten minutes before.
        categories = app.histories["categories"].values(T0 + timedelta(seconds=119))
        assert len(categories) == 60
        assert categories[-12:] == [0.0] * 6 + [1.0] * 6
        assert categories[:-12] == [0.0] * 48

        # History: the last hour per minute; the cursor on 12:01 reads its figures.
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                         and app.screen.history is not None, timeout=10)
        history = app.screen
        assert isinstance(history, HistoryScreen) and history.history is not None
        at = [p.at for p in history.history.points]
        # The window ends with the dashboard's idea of the server's now (from the last
        # frame's time): 12:01 or 12:02.
        assert at[-1] in (T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
        assert len(at) == 60 and at[-1] - at[0] == timedelta(minutes=59)
        await pilot.press(*["left"] * (len(at) - 1 - at.index(T0 + timedelta(minutes=1))))
        await wait_until(pilot, lambda: "2026-11-24 13:01 (1m) · live 1" in screen_text(app))
        # The cursor line wraps at 120 columns: read it with the line breaks as spaces.
        assert "payment errors 1 (card_declined 1) · paid 1 (25.50) · failed 25.50" in (
            re.sub(r"\s+", " ", screen_text(app)))

        # Enter: Replay of 12:01 (13:01 in Berlin), from the server's snapshot and errors.
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayScreen)
                         and app.screen.loaded_at is not None, timeout=10)
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        assert replay.at == T0 + timedelta(minutes=1)
        await wait_until(pilot, lambda: "REPLAY 13:01 · 2026-11-24" in screen_text(app))
        await wait_until(pilot, lambda: read_digits(
            app, replay.query_one("#categories").query_one(Digits)) == "1")
        assert "shoes" in screen_text(app)
        rows = replay.query_one(ErrorTable).rows_shown
        assert [(r.email, r.error_code, r.amount_text) for r in rows] == [
            ("ann@example.com", "card_declined", "25.50")]
        # A minute back: 12:00 as it ended (the 12:01 sample: Ann on shoes, no error yet).
        await pilot.press("left")
        await wait_until(pilot, lambda: replay.loaded_at == T0, timeout=10)
        await wait_until(pilot, lambda: "REPLAY 13:00" in screen_text(app)
                         and replay.query_one(ErrorTable).row_count == 0)
        assert read_digits(app, replay.query_one("#categories").query_one(Digits)) == "1"
        # Before the server ran, no minute was sampled: the server's reason is on screen and
        # the replay stays on the minute it shows.
        await pilot.press("left")
        await wait_until(pilot, lambda: replay.loaded_at == T0 - timedelta(minutes=1),
                         timeout=10)
        await pilot.press("left")
        await wait_until(pilot, lambda: "Could not replay 12:58: no live numbers recorded for "
                         "the minute of 2026-11-24T11:58:00Z: no server was sampling then"
                         in re.sub(r"\s+", " ", screen_text(app)), timeout=10)
        assert replay.loaded_at == T0 - timedelta(minutes=1)
        assert "REPLAY 12:59" in screen_text(app)
        await pilot.press("right", "right")
        await wait_until(pilot, lambda: replay.loaded_at == T0 + timedelta(minutes=1),
                         timeout=10)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is live)
        assert app.query_one(StatusBar).state == "connected"

        # j on Ann's error row: her journey from the server.
        await wait_until(pilot, lambda: live.query_one(ErrorTable).row_count == 1)
        await pilot.press("j")
        await wait_until(pilot, lambda: isinstance(app.screen, CustomerScreen)
                         and app.screen.journey is not None, timeout=10)
        customer = app.screen
        assert isinstance(customer, CustomerScreen) and customer.journey is not None
        assert customer.journey.session.session_id == ann
        text = screen_text(app)
        assert re.search(r"13:00:00  · homepage", text)
        assert "· category · shoes" in text
        assert "▸ checkout started · 25.50 · card · 1 item(s)" in text
        assert "✕ attempt 1 failed: card_declined “Declined” · 25.50" in text
        assert "✓ paid 25.50 after 1 failed attempt(s)" in text
        assert "1 session(s) of ann@example.com" in text

        # Report: the last 24 h, the numbers `nilemetrics report --json` prints.
        await pilot.press("4")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen)
                         and app.screen.report is not None, timeout=10)
        report = app.screen
        assert isinstance(report, ReportScreen) and report.report is not None
        shown = report.report.model_dump(mode="json", by_alias=True)
        result = CliRunner().invoke(cli, [
            "report", "--json", "--since", shown["since"], "--until", shown["until"],
            "--database-url", server.settings.database_url])
        assert result.exit_code == 0, result.output
        printed = json.loads(result.output)
        for key in ("timeOnPage", "funnel", "abandonment", "paymentErrors", "retries",
                    "paymentSuccess"):
            assert shown[key] == printed[key], key
        text = screen_text(app)
        assert re.search(r"card_declined\s+1\s+1\s+25.50\s+25.50", text)
        assert "Retries: 1 of 1 failed checkouts paid later (100.0%)" in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_watch_at_opens_replay_on_a_real_server(server: LiveServer,
                                                      tmp_path: Path) -> None:
    """replay_at (watch --at) opens Replay of that minute; Esc goes to the live screen."""
    seed_history(server)
    app = _app(server, tmp_path, replay_at=T0 + timedelta(minutes=1, seconds=30))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayScreen)
                         and app.screen.loaded_at is not None, timeout=10)
        await wait_until(pilot, lambda: "REPLAY 13:01" in screen_text(app))
        assert app.screen.query_one(ErrorTable).row_count == 1
        await pilot.press("escape")
        await wait_until(pilot, lambda: type(app.screen) is LiveScreen)
        await wait_until(pilot, lambda: "● connected" in screen_text(app), timeout=10)
