"""Live counts and the live-metrics snapshot, read from a migrated SQLite file (no server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert

from nilemetrics.server.live import live_counts, snapshot
from nilemetrics.server.tables import checkouts_t, errors_t, sessions_t

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = 90.0
EMPTY_SCALARS = {"homepage": 0, "product": 0, "search": 0, "checkout": 0, "payment": 0,
                 "paymentError": 0, "other": 0}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def session(page: str | None, ident: str | None = None, *, seen: float = 10,
            active: bool = True) -> dict[str, Any]:
    """A session row last seen ``seen`` seconds ago on ``page``."""
    return {
        "session_id": str(uuid.uuid4()),
        "is_active": active,
        "started_at": ago(seen + 60),
        "last_activity": ago(seen),
        "ended_at": None if active else ago(seen),
        "current_page_type": page,
        "current_page_identifier": ident,
    }


def add_sessions(engine: Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(sessions_t), list(rows))


def counts(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return live_counts(conn, NOW, WINDOW)


def test_an_empty_database_counts_nothing(engine: Engine) -> None:
    """No sessions: every counter is 0 and the per-id maps are empty."""
    assert counts(engine) == {**EMPTY_SCALARS, "categories": {}, "offers": {}, "pages": {},
                              "platforms": {"web": 0, "ios": 0, "android": 0, "other": 0},
                              "liveSessions": 0}


def test_every_live_session_counts_on_exactly_one_page(engine: Engine) -> None:
    """Pages add up to liveSessions; categories and offers per id, busiest first."""
    add_sessions(
        engine,
        session("homepage"), session("homepage"),
        session("category", "shoes"), session("category", "bags"), session("category", "bags"),
        session("offer", "ramadan"),
        session("product", "p-1"), session("product", "p-2"),
        session("search"), session("checkout"), session("payment"), session("payment_error"),
        session("other"),
    )
    result = counts(engine)
    assert result == {
        "homepage": 2, "product": 2, "search": 1, "checkout": 1, "payment": 1,
        "paymentError": 1, "other": 1,
        "categories": {"bags": 2, "shoes": 1},
        "offers": {"ramadan": 1},
        "pages": {"category": 3, "homepage": 2, "product": 2, "checkout": 1, "offer": 1,
                  "other": 1, "payment": 1, "payment_error": 1, "search": 1},
        "platforms": {"web": 13, "ios": 0, "android": 0, "other": 0},
        "liveSessions": 13,
    }
    assert list(result["categories"]) == ["bags", "shoes"]
    assert sum(result["pages"].values()) == result["liveSessions"]


def test_any_slug_page_type_is_counted_under_pages(engine: Engine) -> None:
    """A page type nobody listed counts in pages and liveSessions, not under "other"."""
    add_sessions(engine, session("product_listing"), session("product_listing"),
                 session("wishlist"), session("homepage"))
    result = counts(engine)
    assert result["pages"] == {"product_listing": 2, "homepage": 1, "wishlist": 1}
    assert (result["liveSessions"], result["other"], result["homepage"]) == (4, 0, 1)


def test_a_session_that_only_started_is_not_counted(engine: Engine) -> None:
    """A session with no page yet (clients race and start two) is not live."""
    add_sessions(engine, session(None), session(None), session("search"))
    result = counts(engine)
    assert (result["liveSessions"], result["pages"]) == (1, {"search": 1})


def test_sessions_outside_the_live_window_are_not_counted(engine: Engine) -> None:
    """A session last seen longer ago than the window is gone; one exactly at its edge counts."""
    add_sessions(engine, session("homepage", seen=WINDOW + 0.001), session("homepage", seen=600),
                 session("product", "p", seen=WINDOW))
    result = counts(engine)
    assert (result["liveSessions"], result["homepage"], result["product"]) == (1, 0, 1)


def test_ended_sessions_are_not_counted(engine: Engine) -> None:
    """A session that ended is not live, even if its last event is recent."""
    add_sessions(engine, session("checkout", seen=1, active=False), session("checkout"))
    result = counts(engine)
    assert (result["liveSessions"], result["checkout"], result["pages"]) == (1, 1, {"checkout": 1})


def test_categories_and_offers_without_an_id_are_counted_under_an_empty_id(
    engine: Engine,
) -> None:
    """A stored category visit without an identifier counts under "" (never lost)."""
    add_sessions(engine, session("category"), session("offer"))
    result = counts(engine)
    assert (result["categories"], result["offers"], result["liveSessions"]) == (
        {"": 1}, {"": 1}, 2
    )


def checkout(session_id: str, status: str, started: float, **times: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": session_id, "checkout_items": [], "item_count": 1,
        "total_amount": Decimal("84.20"), "payment_method": "ziina", "status": status,
        "error_count": 1 if "payment_error_at" in times else 0,
        "started_at": ago(started), "updated_at": ago(started),
        "payment_started_at": None, "payment_error_at": None, "completed_at": None,
    }
    row.update({name: ago(seconds) for name, seconds in times.items()})
    return row


def test_the_snapshot_has_the_live_counts_and_the_hours_payment_figures(engine: Engine) -> None:
    """snapshot(): live counts, last hour's checkouts, errors, outcomes and funnel."""
    paid, failed, browsing = session("payment"), session("payment_error"), session("product", "p")
    add_sessions(engine, paid, failed, browsing)
    with engine.begin() as conn:
        conn.execute(insert(checkouts_t), [
            checkout(paid["session_id"], "completed", 600, payment_started_at=500,
                     completed_at=400),
            checkout(failed["session_id"], "failed", 300, payment_error_at=200),
            # Over an hour ago: in no figure.
            checkout(browsing["session_id"], "completed", 7200, completed_at=7100),
        ])
        conn.execute(insert(errors_t), [
            {"session_id": failed["session_id"], "attempt": 1, "occurred_at": ago(200)},
            {"session_id": failed["session_id"], "attempt": 0, "occurred_at": ago(4000)},
        ])
        metrics = snapshot(conn, NOW, WINDOW)
    body = metrics.model_dump(mode="json", by_alias=True)
    assert body == {
        **EMPTY_SCALARS, "payment": 1, "paymentError": 1, "product": 1,
        "categories": {}, "offers": {},
        "pages": {"payment": 1, "payment_error": 1, "product": 1},
        "platforms": {"web": 3, "ios": 0, "android": 0, "other": 0},
        "liveSessions": 3,
        "checkoutsLastHour": 2, "paymentErrorsLastHour": 1, "paymentSuccessesLastHour": 1,
        "paymentFailuresLastHour": 1, "paymentSuccessRate": 0.5,
        "sessionsLastHour": 3, "checkoutSessionsLastHour": 2, "paymentSessionsLastHour": 2,
        "paidSessionsLastHour": 1,
        "customEvents": {},
        "liveWindowSeconds": 90.0, "alerts": [], "lastUpdated": "2025-03-01T12:00:00Z",
    }


def test_without_an_outcome_the_success_rate_is_null(engine: Engine) -> None:
    """A checkout that has not reached payment gives no success rate (not 0)."""
    s = session("checkout")
    add_sessions(engine, s)
    with engine.begin() as conn:
        conn.execute(insert(checkouts_t), [checkout(s["session_id"], "in_progress", 30)])
        metrics = snapshot(conn, NOW, WINDOW)
    assert (metrics.payment_success_rate, metrics.checkouts_last_hour,
            metrics.payment_sessions_last_hour) == (None, 1, 0)
