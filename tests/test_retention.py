"""Retention rules (server.retention) on a database, called directly (no server, no CLI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, event, func, insert, select

from nilemetrics.server import retention
from nilemetrics.server.retention import purge, purgeable, retention_cutoff
from nilemetrics.server.tables import (
    checkouts_t,
    errors_t,
    events_t,
    rollups_t,
    sessions_t,
    visits_t,
)
from tests.cli.seed import seed

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)
TABLES = (visits_t, errors_t, checkouts_t, events_t, sessions_t, rollups_t)
TICK = timedelta(microseconds=1)


@pytest.fixture
def engine(any_engine: Engine) -> Engine:
    """An engine on an empty database with the current schema (either database)."""
    return any_engine


def _totals(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in TABLES}


def _ids(engine: Engine, column: str, table: str = "user_sessions") -> set[str]:
    by_name = {t.name: t for t in TABLES}
    with engine.connect() as conn:
        return {str(v) for v in conn.execute(select(by_name[table].c[column])).scalars()}


def test_cutoff_is_that_long_ago_and_the_period_must_be_positive() -> None:
    """90 days before now is the cutoff; a zero or negative period is refused."""
    assert retention_cutoff(NOW, 90 * 86400) == CUTOFF
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="^must be longer than zero$"):
            retention_cutoff(NOW, bad)


def test_dry_run_counts_what_purge_then_deletes(database_url: str, engine: Engine) -> None:
    """On the seeded history, purgeable's counts equal purge's and only S6 (100 days old) goes."""
    seeded = seed(database_url, now=NOW)
    before = _totals(engine)
    expected = {"page_visits": 2, "payment_errors": 1, "checkout_sessions": 1, "events": 3,
                "user_sessions": 1, "metric_rollups": 0}
    with engine.connect() as conn:
        assert purgeable(conn, CUTOFF) == expected
    assert _totals(engine) == before
    with engine.connect() as conn:
        deleted = purge(conn, CUTOFF)
    assert deleted == expected
    assert list(deleted) == [t.name for t in TABLES]  # children before their sessions
    assert _totals(engine) == {name: before[name] - expected[name] for name in before}
    left = _ids(engine, "session_id")
    assert seeded.sessions["S6"] not in left
    assert left == {sid for name, sid in seeded.sessions.items() if name != "S6"}
    with engine.connect() as conn:
        assert purge(conn, CUTOFF) == dict.fromkeys(expected, 0)


def test_purge_boundaries(engine: Engine) -> None:
    """Strictly older than the cutoff goes; at the cutoff, open, live or recently updated stays."""
    old = CUTOFF - timedelta(days=1)
    with engine.begin() as conn:
        for sid, active, ended in (
            ("ended-before", False, CUTOFF - TICK),
            ("ended-at-cutoff", False, CUTOFF),
            ("live-but-old", True, None),
        ):
            conn.execute(insert(sessions_t).values(
                session_id=sid, is_active=active, started_at=old,
                last_activity=ended or old, ended_at=ended,
            ))
        for page, active, entered in (
            ("closed-before", False, CUTOFF - TICK),
            ("closed-at-cutoff", False, CUTOFF),
            ("open-old", True, old),
        ):
            conn.execute(insert(visits_t).values(
                session_id="live-but-old", page_type=page, entered_at=entered,
                is_active=active,
            ))
        for sid, started, updated in (
            ("ended-before", old, CUTOFF - TICK),     # finished long ago: goes
            ("ended-at-cutoff", old, CUTOFF),         # touched at the cutoff: stays
            ("live-but-old", old, NOW),               # started long ago, still moving: stays
        ):
            conn.execute(insert(checkouts_t).values(
                session_id=sid, checkout_items=[], total_amount=Decimal("1.00"),
                status="in_progress", started_at=started, updated_at=updated,
            ))
        for code, at in (("before", CUTOFF - TICK), ("at-cutoff", CUTOFF)):
            conn.execute(insert(errors_t).values(
                session_id="live-but-old", attempt=1, error_code=code, occurred_at=at,
            ))
            conn.execute(insert(events_t).values(
                event_id=f"ev-{code}", event_type="page-visit", session_id="live-but-old",
                occurred_at=at, payload={},
            ))
        # Rollups go once their bucket ended before the cutoff.
        for resolution, width in (("minute", timedelta(minutes=1)), ("hour", timedelta(hours=1))):
            for at in (CUTOFF - width - TICK, CUTOFF - width):
                conn.execute(insert(rollups_t).values(
                    resolution=resolution, bucket_start=at, complete=True, sessions_started=0,
                    page_visits=0, checkouts_started=0, payment_errors=0, payment_successes=0,
                ))
    with engine.connect() as conn:
        assert purge(conn, CUTOFF) == {"page_visits": 1, "payment_errors": 1,
                                       "checkout_sessions": 1, "events": 1, "user_sessions": 1,
                                       "metric_rollups": 2}
    assert _ids(engine, "session_id") == {"ended-at-cutoff", "live-but-old"}
    assert _ids(engine, "page_type", "page_visits") == {"closed-at-cutoff", "open-old"}
    assert _ids(engine, "session_id", "checkout_sessions") == {"ended-at-cutoff", "live-but-old"}
    assert _ids(engine, "error_code", "payment_errors") == {"at-cutoff"}
    assert _ids(engine, "event_id", "events") == {"ev-at-cutoff"}
    assert _ids(engine, "bucket_start", "metric_rollups") == {
        str(CUTOFF - timedelta(minutes=1)), str(CUTOFF - timedelta(hours=1))}


def test_purge_commits_chunk_by_chunk(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With chunks of 2 rows, 5 old events take 3 separate commits, and all of them go."""
    with engine.begin() as conn:
        conn.execute(insert(events_t), [
            {"event_id": f"ev-{n}", "event_type": "page-visit", "session_id": "s",
             "occurred_at": CUTOFF - timedelta(days=1), "payload": {}}
            for n in range(5)
        ])
    monkeypatch.setattr(retention, "PURGE_CHUNK", 2)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    with engine.connect() as conn:
        assert purge(conn, CUTOFF)["events"] == 5
    # Per table one commit per chunk, the last one short: events 2 + 2 + 1, others 0.
    assert len(commits) == 3 + (len(TABLES) - 1)
    assert _totals(engine)["events"] == 0


def test_purge_refuses_a_connection_inside_a_transaction(engine: Engine) -> None:
    """purge commits as it goes, so a caller's open transaction is refused, not committed."""
    with engine.connect() as conn, conn.begin():
        with pytest.raises(RuntimeError, match="outside a transaction"):
            purge(conn, CUTOFF)


def test_purgeable_reads_inside_a_callers_transaction(engine: Engine) -> None:
    """A dry run may share the caller's transaction and sees its uncommitted rows."""
    with engine.connect() as conn, conn.begin() as tx:
        conn.execute(insert(events_t).values(
            event_id="ev-x", event_type="page-visit", session_id="s",
            occurred_at=CUTOFF - TICK, payload={},
        ))
        assert purgeable(conn, CUTOFF)["events"] == 1
        tx.rollback()

