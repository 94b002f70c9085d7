"""A session's open visit is its latest one: found by one seek, closed by its id.

Migration 0008 (issue 16): on PostgreSQL no index of ``page_visits`` names the
columns a close sets, so the close is a HOT update; the open visit is found through
``ix_page_visits_session (session_id, id)``; visits left open behind a later one
are closed by the migration, so that the rule holds for every stored visit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select, text

from nilemetrics.protocol.bodies import PageVisitIn, SessionStartIn
from nilemetrics.protocol.names import EventType
from nilemetrics.server.db import alembic_config, make_engine, migrate
from nilemetrics.server.ingestion.apply import apply_batch
from nilemetrics.server.ingestion.events import TrackedEvent, tracked_event
from nilemetrics.server.ingestion.privacy import RequestContext
from nilemetrics.server.ingestion.statements import statements
from nilemetrics.server.ingestion.writer_process import WRITER_PG_OPTIONS
from nilemetrics.server.services.cleanup import end_stale_sessions
from nilemetrics.server.tables import sessions_t, visits_t
from tests.support import pg_available, temporary_pg_database

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CONTEXT = RequestContext("203.0.113.9", "open-visits test", False)
#: What closing a visit sets: no index may name them.
CLOSE_SETS = {"exited_at", "duration_seconds", "is_active"}


def _start(sid: str, at: datetime) -> TrackedEvent:
    return tracked_event(EventType.SESSION_START, sid, SessionStartIn(sessionId=sid), CONTEXT, at)


def _visit(sid: str, page: str, at: datetime) -> TrackedEvent:
    body = PageVisitIn.model_validate({"sessionId": sid, "pageType": page})
    return tracked_event(EventType.PAGE_VISIT, sid, body, CONTEXT, at)


def _visits(engine: Engine, sid: str) -> list[tuple[Any, ...]]:
    v = visits_t.c
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(v.page_type, v.is_active, v.duration_seconds)
            .where(v.session_id == sid).order_by(v.id)
        )]


def test_what_a_close_sets_is_indexed_only_for_the_sqlite_report(any_engine: Engine) -> None:
    """The migrated schema: the session's visits are indexed in order, and closing a visit
    changes no indexed column nor a partial index's condition, but for the duration in
    SQLite's covering time-on-page index (PostgreSQL: none, the close is HOT)."""
    indexes = inspect(any_engine).get_indexes("page_visits")
    by_name = {index["name"]: index for index in indexes}
    assert set(by_name) == {"ix_page_visits_session", "ix_page_visits_type_time"}
    assert by_name["ix_page_visits_session"]["column_names"] == ["session_id", "id"]
    covering = {"duration_seconds"} if any_engine.dialect.name == "sqlite" else set()
    assert by_name["ix_page_visits_type_time"]["column_names"] == [
        "page_type", "entered_at", "page_identifier", *covering]
    for index in indexes:
        where = json.dumps(index.get("dialect_options", {}), default=str)
        assert not any(column in where for column in CLOSE_SETS), index
    if any_engine.dialect.name == "postgresql":
        with any_engine.connect() as conn:
            options = conn.execute(text(
                "SELECT reloptions FROM pg_class WHERE relname = 'page_visits'")).scalar_one()
        assert options == ["fillfactor=70"]


def test_a_long_history_closes_only_the_latest_visit(any_engine: Engine) -> None:
    """Visit after visit, each closes the one before: one open visit, the latest, and
    cleanup closes exactly that one at the session's last activity."""
    sid = "0193a1b2-0000-7000-8000-00000000aaaa"
    pages = ["homepage", "search", "product", "checkout", "payment"]
    for n, page in enumerate(pages):
        events = [_start(sid, T0)] if n == 0 else []
        with any_engine.begin() as conn:
            apply_batch(conn, [*events, _visit(sid, page, T0 + timedelta(seconds=10 * n))])
    assert _visits(any_engine, sid) == [
        (page, False, 10.0) for page in pages[:-1]
    ] + [("payment", True, None)]

    with any_engine.begin() as conn:
        assert end_stale_sessions(conn, T0 + timedelta(hours=2), 1800) == (1, 1)
    # Closed at the last activity (the payment page's visit, 40 s in): 0 s on it.
    assert _visits(any_engine, sid)[-1] == ("payment", False, 0.0)
    with any_engine.begin() as conn:
        apply_batch(conn, [_visit(sid, "homepage", T0 + timedelta(hours=3))])
    # Revived: the closed visits stay as they were, the new one is open.
    assert _visits(any_engine, sid)[-2:] == [("payment", False, 0.0), ("homepage", True, None)]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_closes_a_visit_with_a_hot_update(any_engine: Engine) -> None:
    """On PostgreSQL the close writes no index entry: the update is heap-only."""
    sid = "0193a1b2-0000-7000-8000-00000000bbbb"
    with any_engine.begin() as conn:
        apply_batch(conn, [_start(sid, T0), _visit(sid, "homepage", T0)])
    with any_engine.begin() as conn:
        apply_batch(conn, [_visit(sid, "product", T0 + timedelta(seconds=5))])
        updated, hot = conn.execute(text(
            "SELECT pg_stat_get_xact_tuples_updated('page_visits'::regclass), "
            "pg_stat_get_xact_tuples_hot_updated('page_visits'::regclass)"
        )).one()
    assert (updated, hot) == (1, 1)
    assert _visits(any_engine, sid) == [("homepage", False, 5.0), ("product", True, None)]


def _scans_of(plan: dict[str, Any], relation: str) -> Iterator[dict[str, Any]]:
    if plan.get("Relation Name") == relation:
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans_of(child, relation)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_finds_open_visits_by_seeks_with_stale_statistics(any_engine: Engine) -> None:
    """The writer's load and close reach page_visits only through index conditions,
    with the writer's settings, on a table grown far past its statistics.

    Under the ingest benchmark's load (2,000 sessions, 55,000 visits) the load written
    as a join on the latest visit's id was planned as a hash of every open visit,
    found by walking the whole primary key; this test's smaller database did not get
    that plan even for the join, so it guards the shape of the LATERAL probes (an
    index condition on every scan of page_visits), not that planner's choice."""
    sids = [f"0193a1b2-0000-7000-8000-{n:012d}" for n in range(300)]
    with any_engine.begin() as conn:
        apply_batch(conn, [_start(sid, T0) for sid in sids])
        apply_batch(conn, [_visit(sid, "homepage", T0) for sid in sids[:30]])
    with any_engine.connect() as conn:
        conn.execute(text("ANALYZE page_visits, user_sessions"))  # while nearly empty: stale
        conn.commit()
    for step in range(15):
        with any_engine.begin() as conn:
            apply_batch(conn, [_visit(sid, "product", T0 + timedelta(seconds=step))
                               for sid in sids])
    wanted = sids[:8]
    engine = make_engine(str(any_engine.url.render_as_string(hide_password=False)),
                         pg_options=WRITER_PG_OPTIONS)
    try:
        with engine.begin() as conn:
            sql = statements(conn)
            raw: Any = conn.connection.dbapi_connection
            ids = [row[0] for row in conn.execute(
                select(visits_t.c.id).where(visits_t.c.session_id.in_(wanted)
                                            & visits_t.c.is_active))]
            [(close, params)] = sql.chunks(
                sql.close_visits, [(i, T0, 1.0) for i in ids], numbered=True)
            with psycopg.RawCursor(raw) as cursor:
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql._select_sessions, (wanted,))
                load = cursor.fetchone()[0][0]["Plan"]  # type: ignore[index]
                cursor.execute("EXPLAIN (FORMAT JSON) " + close, params)
                update = cursor.fetchone()[0][0]["Plan"]  # type: ignore[index]
    finally:
        engine.dispose()
    for plan in (load, update):
        scans = list(_scans_of(plan, "page_visits"))
        assert scans, plan
        for scan in scans:
            if scan["Node Type"] == "ModifyTable":
                continue
            assert "Index Cond" in scan, json.dumps(plan, indent=1)


def _migrate_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no schema at all (to migrate step by step)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if pg_available() is not None:
        request.getfixturevalue("pg_database")  # fails in CI, skips locally
    with temporary_pg_database() as url:
        yield url


def test_migration_closes_visits_left_open_behind_a_later_one(fresh_url: str) -> None:
    """Upgrading from 0007: a visit left open behind a later visit of its session is
    closed when that later one began; each session's latest open visit stays open,
    and the writer then closes it as usual."""
    engine = make_engine(fresh_url)
    try:
        _migrate_to(engine, "0007")
        stray = "0193a1b2-0000-7000-8000-00000000cccc"
        single = "0193a1b2-0000-7000-8000-00000000dddd"
        with engine.begin() as conn:
            for sid in (stray, single):
                conn.execute(insert(sessions_t).values(
                    session_id=sid, is_active=True, started_at=T0, last_activity=T0,
                    current_page_type="product"))
            conn.execute(insert(visits_t), [
                {"session_id": stray, "page_type": "homepage", "entered_at": T0,
                 "is_active": True},
                {"session_id": stray, "page_type": "category",
                 "entered_at": T0 + timedelta(seconds=7), "is_active": True},
                {"session_id": stray, "page_type": "product",
                 "entered_at": T0 + timedelta(seconds=19), "is_active": True},
                {"session_id": single, "page_type": "product", "entered_at": T0,
                 "is_active": True},
            ])
        migrate(engine)
        assert _visits(engine, stray) == [
            ("homepage", False, 7.0), ("category", False, 12.0), ("product", True, None)]
        assert _visits(engine, single) == [("product", True, None)]
        with engine.begin() as conn:
            apply_batch(conn, [_visit(stray, "checkout", T0 + timedelta(seconds=30))])
        assert _visits(engine, stray)[-2:] == [("product", False, 11.0), ("checkout", True, None)]
    finally:
        engine.dispose()


def test_migration_0008_downgrades_and_upgrades_again(fresh_url: str) -> None:
    """0008 down gives back 0007's indexes of page_visits; up again gives the new ones."""
    engine = make_engine(fresh_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0007")
        names = {index["name"] for index in inspect(engine).get_indexes("page_visits")}
        assert names == {"ix_page_visits_open", "ix_page_visits_session_id",
                         "ix_page_visits_type_time"}
        type_time = next(index for index in inspect(engine).get_indexes("page_visits")
                         if index["name"] == "ix_page_visits_type_time")
        assert type_time["column_names"][-1] == "duration_seconds"
        migrate(engine)
        names = {index["name"] for index in inspect(engine).get_indexes("page_visits")}
        assert names == {"ix_page_visits_session", "ix_page_visits_type_time"}
    finally:
        engine.dispose()
