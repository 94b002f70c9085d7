"""`nilemetrics simulate` against a real server: payloads accepted, counts match the data."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from nilemetrics.demo.shoppers import DECLINES
from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import checkouts_t, errors_t, sessions_t, visits_t
from tests.cli.conftest import Invoke
from tests.support import LiveServer


def test_simulated_shoppers_are_stored(server: LiveServer, nm: Invoke) -> None:
    """Every request is accepted, and the summary equals what the database holds."""
    result = nm("simulate", "--url", server.base_url, "--shoppers", "8", "--duration", "3s",
                "--speed", "60", "--error-rate", "0.5", "--seed", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["failedRequests"] == 0
    assert summary["sessions"] >= 8 and summary["checkouts"] > 0
    assert summary["paymentErrors"] > 0 and summary["heartbeats"] > 0
    assert set(summary["errorCodes"]) <= {code for code, _msg, _w in DECLINES}
    engine = make_engine(server.settings.effective_database_url())
    with engine.connect() as conn:
        def count(table, *where):  # type: ignore[no-untyped-def]
            stmt = select(func.count()).select_from(table)
            for cond in where:
                stmt = stmt.where(cond)
            return conn.execute(stmt).scalar_one()

        # Each visitor's client also starts a stray session that reports no page.
        assert summary["straySessions"] == summary["sessions"]
        assert count(sessions_t) == summary["sessions"] + summary["straySessions"]
        assert count(sessions_t, sessions_t.c.current_page_type.is_(None)) == (
            summary["straySessions"])
        assert count(visits_t) == summary["pageVisits"]
        assert count(checkouts_t) == summary["checkouts"]
        assert count(errors_t) == summary["paymentErrors"]
        assert count(checkouts_t, checkouts_t.c.completed_at.is_not(None)) == summary["payments"]
        # Nested errorDetails arrive whole: code, message and the provider's details.
        details = conn.execute(select(errors_t.c.error_details)).scalars().first()
        emails = conn.execute(
            select(func.count()).select_from(sessions_t).where(sessions_t.c.email.is_not(None))
        ).scalar_one()
    engine.dispose()
    assert details["errorCode"] in summary["errorCodes"]
    assert details["errorDetails"]["type"] == "card_error"
    assert details["url"] == "https://shop.example/checkout/payment"
    assert emails > 0  # some shoppers are logged in


def test_simulate_table_summary(server: LiveServer, nm: Invoke) -> None:
    """Without --json the summary is a Rich table."""
    result = nm("simulate", "--url", server.base_url, "--shoppers", "2", "--duration", "1s",
                "--speed", "100", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "Simulation summary" in result.stdout and "HTTP requests" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://10.1.2.3:8000"],
         "error: --url: 10.1.2.3 is not a loopback address: the simulator only targets this "
         "machine (localhost, 127.0.0.0/8, ::1)"),
        (["--url", "http://shop.example"],
         "error: --url: shop.example is not a loopback address: the simulator only targets "
         "this machine (localhost, 127.0.0.0/8, ::1)"),
        (["--duration", "3x"],
         "error: --duration: invalid duration '3x': use a number of seconds or forms like "
         "90s, 30m, 1h30m, 7d"),
        (["--duration", "2d"], "error: --duration: must be longer than zero and at most 24h"),
    ],
)
def test_simulate_refuses(nm: Invoke, args: list[str], message: str) -> None:
    """Non-loopback targets and unbounded or bad durations are refused in one line."""
    result = nm("simulate", *args)
    assert result.exit_code == 1
    assert result.stderr.replace("\n", " ").strip() == message


def test_simulate_unreachable_server(nm: Invoke) -> None:
    """No server at the URL: one line saying so."""
    from tests.support import free_port

    result = nm("simulate", "--url", f"http://127.0.0.1:{free_port()}", "--duration", "1s")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach a server at http://127.0.0.1:")
