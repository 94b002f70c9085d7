"""The report's analytics (server.reports) on a database, called directly (no server, no CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, insert

from nilemetrics.server.db import make_engine, migrate
from nilemetrics.server.reports import (
    abandonment,
    build_report,
    error_codes,
    funnel,
    payment_success,
    retries,
    time_on_page,
)
from nilemetrics.server.tables import checkouts_t, errors_t, sessions_t, visits_t
from tests.cli.seed import seed

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    """A connection, in a transaction, on an empty database with the current schema."""
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as connection, connection.begin():
        yield connection
    engine.dispose()


def _session(conn: Connection, sid: str, started: datetime, *, last: datetime,
             active: bool = False, page: str = "homepage") -> None:
    conn.execute(insert(sessions_t).values(
        session_id=sid, is_active=active, started_at=started, last_activity=last,
        ended_at=None if active else last, current_page_type=page,
    ))


def _visit(conn: Connection, sid: str, page_type: str, entered: datetime, seconds: float,
           identifier: str | None = None) -> None:
    conn.execute(insert(visits_t).values(
        session_id=sid, page_type=page_type, page_identifier=identifier, entered_at=entered,
        exited_at=entered + timedelta(seconds=seconds), duration_seconds=seconds,
        is_active=False,
    ))


def test_report_of_the_seeded_history_has_the_hand_computed_figures(database_url: str) -> None:
    """build_report over the last 24 h of tests/cli/seed.py gives every hand-worked number."""
    seed(database_url, now=NOW)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        body = build_report(conn, NOW - DAY, NOW)
    engine.dispose()
    assert body == {
        "since": "2026-03-09T12:00:00Z",
        "until": "2026-03-10T12:00:00Z",
        "timeOnPage": {
            "byPageType": [
                {"pageType": "homepage", "visits": 5, "avgSeconds": 22.4},
                {"pageType": "category", "visits": 3, "avgSeconds": 40.0},
                {"pageType": "checkout", "visits": 3, "avgSeconds": 11.0},
                {"pageType": "payment", "visits": 2, "avgSeconds": 7.5},
                {"pageType": "offer", "visits": 1, "avgSeconds": 60.0},
                {"pageType": "payment_error", "visits": 1, "avgSeconds": 5.0},
                {"pageType": "product", "visits": 1, "avgSeconds": 20.0},
            ],
            "byCategory": [
                {"identifier": "shoes", "visits": 2, "avgSeconds": 40.0},
                {"identifier": "hats", "visits": 1, "avgSeconds": 40.0},
            ],
            "byOffer": [{"identifier": "black-friday", "visits": 1, "avgSeconds": 60.0}],
        },
        "funnel": [
            {"step": "sessions", "sessions": 5, "dropOff": None, "dropOffRate": None,
             "conversion": 1.0},
            {"step": "checkout", "sessions": 3, "dropOff": 2, "dropOffRate": 0.4,
             "conversion": 0.6},
            {"step": "payment", "sessions": 3, "dropOff": 0, "dropOffRate": 0.0,
             "conversion": 0.6},
            {"step": "success", "sessions": 2, "dropOff": 1, "dropOffRate": 0.3333,
             "conversion": 0.4},
        ],
        "abandonment": [
            {"pageType": "payment_error", "pageIdentifier": None, "sessions": 1, "share": 1.0},
        ],
        "paymentErrors": [
            {"errorCode": "insufficient_funds", "errors": 2, "checkouts": 1,
             "amountAtStake": "50.00", "amountRecovered": "0.00"},
            {"errorCode": "card_declined", "errors": 1, "checkouts": 1,
             "amountAtStake": "100.00", "amountRecovered": "100.00"},
        ],
        "retries": {
            "failedCheckouts": 2,
            "succeededAfterRetry": 1,
            "succeededAfterRetryRate": 0.5,
            "byFailures": [
                {"failures": 1, "checkouts": 1, "succeeded": 1, "shareOfFailedCheckouts": 0.5},
                {"failures": 2, "checkouts": 1, "succeeded": 0, "shareOfFailedCheckouts": 0.0},
            ],
        },
        "paymentSuccess": {
            "checkouts": 3, "checkoutsWithOutcome": 3, "paid": 2, "successRate": 0.6667,
            "paymentAttempts": 5, "attemptSuccessRate": 0.4,
        },
        "customEvents": [],
    }


def test_an_empty_database_reports_zeros_and_no_rates(conn: Connection) -> None:
    """No history: every count is zero and every rate None (never a division by zero)."""
    body = build_report(conn, NOW - DAY, NOW)
    assert body["timeOnPage"] == {"byPageType": [], "byCategory": [], "byOffer": []}
    assert [(s["step"], s["sessions"], s["conversion"]) for s in body["funnel"]] == [
        ("sessions", 0, None), ("checkout", 0, None), ("payment", 0, None),
        ("success", 0, None),
    ]
    assert body["abandonment"] == []
    assert body["paymentErrors"] == []
    assert body["retries"] == {"failedCheckouts": 0, "succeededAfterRetry": 0,
                               "succeededAfterRetryRate": None, "byFailures": []}
    assert body["paymentSuccess"] == {
        "checkouts": 0, "checkoutsWithOutcome": 0, "paid": 0, "successRate": None,
        "paymentAttempts": 0, "attemptSuccessRate": None,
    }


def test_period_includes_its_start_and_excludes_its_end(conn: Connection) -> None:
    """A visit, error or checkout exactly at ``since`` counts; one exactly at ``until`` not."""
    since, until = NOW - DAY, NOW
    _session(conn, "s-in", since - timedelta(hours=1), last=since + timedelta(hours=1))
    for at, seconds in ((since, 10.0), (until, 99.0), (since - timedelta(microseconds=1), 77.0)):
        _visit(conn, "s-in", "homepage", at, seconds)
    checkout_ids = []
    for at in (since, until):
        checkout_ids.append(conn.execute(insert(checkouts_t).values(
            session_id="s-in", checkout_items=[], total_amount=Decimal("5.00"),
            status="failed", error_count=1, started_at=at, updated_at=at,
        ).returning(checkouts_t.c.id)).scalar_one())
        conn.execute(insert(errors_t).values(
            checkout_id=checkout_ids[-1], session_id="s-in", attempt=1, error_code="at-bound",
            amount=Decimal("5.00"), occurred_at=at,
        ))
    assert time_on_page(conn, since, until)["byPageType"] == [
        {"pageType": "homepage", "visits": 1, "avgSeconds": 10.0}
    ]
    assert [(r["errorCode"], r["errors"]) for r in error_codes(conn, since, until)] == [
        ("at-bound", 1)
    ]
    assert retries(conn, since, until)["failedCheckouts"] == 1
    assert payment_success(conn, since, until)["checkouts"] == 1


def test_funnel_counts_sessions_active_in_the_period_only(conn: Connection) -> None:
    """Live or ended within the period counts; ended before it or started after it does not."""
    since, until = NOW - DAY, NOW
    hour = timedelta(hours=1)
    _session(conn, "ended-inside", since - hour, last=since + hour)
    _session(conn, "live", since - 3 * hour, last=until - hour, active=True)
    _session(conn, "ended-before", since - 3 * hour, last=since - hour)
    _session(conn, "started-after", until, last=until + hour)
    _session(conn, "live-idle-before", since - 3 * hour, last=since - hour, active=True)
    steps: list[dict[str, Any]] = funnel(conn, since, until)
    assert steps[0] == {"step": "sessions", "sessions": 2, "dropOff": None,
                        "dropOffRate": None, "conversion": 1.0}


def test_abandonment_is_the_last_page_of_ended_sessions_with_an_unpaid_checkout(
    conn: Connection,
) -> None:
    """Ended sessions that started a checkout and never paid count by last page; sessions
    without a checkout (visitors leaving), paid ones and live ones do not."""
    since, until = NOW - DAY, NOW
    inside = since + timedelta(hours=2)
    _session(conn, "left-on-cart", since, last=inside, page="cart")
    _session(conn, "left-on-cart-2", since, last=inside, page="cart")
    _session(conn, "left-on-home", since, last=inside, page="homepage")
    _session(conn, "browsed-only", since, last=inside, page="category")
    _session(conn, "paid", since, last=inside, page="other")
    _session(conn, "still-here", since, last=inside, active=True, page="product")
    for sid, status in [("left-on-cart", "abandoned"), ("left-on-cart-2", "failed"),
                        ("left-on-home", "in_progress"), ("still-here", "in_progress")]:
        conn.execute(insert(checkouts_t).values(
            session_id=sid, checkout_items=[], total_amount=Decimal("1.00"), status=status,
            started_at=since, updated_at=inside,
        ))
    # Paid after an earlier checkout was left: it bought, so it abandoned nothing.
    for status, completed in [("abandoned", None), ("completed", inside)]:
        conn.execute(insert(checkouts_t).values(
            session_id="paid", checkout_items=[], total_amount=Decimal("1.00"), status=status,
            started_at=since, updated_at=inside, completed_at=completed,
        ))
    assert abandonment(conn, since, until) == [
        {"pageType": "cart", "pageIdentifier": None, "sessions": 2, "share": 0.6667},
        {"pageType": "homepage", "pageIdentifier": None, "sessions": 1, "share": 0.3333},
    ]
    assert abandonment(conn, since, until, limit=1) == [
        {"pageType": "cart", "pageIdentifier": None, "sessions": 2, "share": 0.6667},
    ]
