"""The hot statements: row types checked against the tables, and values as SQLAlchemy reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from nilemetrics.server.ingestion import statements as st
from nilemetrics.server.ingestion.statements import (
    EventInsert,
    SessionInsert,
    SessionStateChange,
    SessionTouch,
    Statements,
    VisitClose,
    VisitInsert,
    one_row_params,
    statements,
)
from nilemetrics.server.tables import events_t, sessions_t, visits_t

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SID = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def test_a_row_is_made_with_keywords_naming_its_columns() -> None:
    """VisitInsert(...) by keyword puts every value under its column's name."""
    row = VisitInsert(session_id=SID, page_type="product", page_identifier="p-1",
                      page_url=None, entered_at=T0, exited_at=None, duration_seconds=None,
                      is_active=1)
    assert row._asdict() == {
        "session_id": SID, "page_type": "product", "page_identifier": "p-1", "page_url": None,
        "entered_at": T0, "exited_at": None, "duration_seconds": None, "is_active": 1,
    }


def test_a_wrong_column_name_in_a_row_fails() -> None:
    """A misspelt keyword is a TypeError, never a value in some other column."""
    with pytest.raises(TypeError, match="sesion_id"):
        VisitInsert(sesion_id=SID, page_type="product", page_identifier=None, page_url=None,
                    entered_at=T0, exited_at=None, duration_seconds=None, is_active=1)


def test_a_row_type_naming_a_missing_column_fails_when_built() -> None:
    """A row type is checked against its table: an unknown column fails at definition."""
    with pytest.raises(LookupError, match=r"page_visits has no column\(s\) \['seconds'\]"):
        st._row_type(visits_t, "Broken", ("session_id", "seconds"))


def test_every_row_type_names_real_columns_of_its_table() -> None:
    """Each row type's fields are columns of the table it writes."""
    for row in (EventInsert, SessionInsert, SessionTouch, SessionStateChange, VisitInsert,
                VisitClose, st.SessionContact):
        assert set(row._fields) <= set(row.table.c.keys()), row.__name__
    assert VisitInsert.table is visits_t and SessionInsert.table is sessions_t
    assert EventInsert.table is events_t


def test_statements_are_built_from_the_row_types() -> None:
    """The SQL names the row type's columns in order, with the dialect's placeholders."""
    lite, pg = Statements("sqlite"), Statements("postgresql")
    assert lite.insert_visits == (
        "INSERT INTO page_visits (session_id, page_type, page_identifier, page_url, "
        "entered_at, exited_at, duration_seconds, is_active) VALUES {rows}"
    )
    assert lite.change_session_state == (
        "UPDATE user_sessions SET is_active = ?, ended_at = ? WHERE session_id = ?"
    )
    assert pg.change_session_state == (
        "UPDATE user_sessions SET is_active = %s, ended_at = %s WHERE session_id = %s"
    )
    assert lite.touch_sessions == (
        "WITH v(session_id, last_activity, current_page_type, current_page_identifier) AS "
        "(VALUES {rows}) UPDATE user_sessions SET last_activity = v.last_activity, "
        "current_page_type = v.current_page_type, "
        "current_page_identifier = v.current_page_identifier "
        "FROM v WHERE user_sessions.session_id = v.session_id"
    )


def test_one_row_parameters_put_the_key_last() -> None:
    """An _update_one statement's parameters: the set columns, then the key."""
    row = SessionStateChange(session_id=SID, is_active=0, ended_at="t")
    assert one_row_params(row) == (0, "t", SID)


def test_values_are_converted_for_each_driver() -> None:
    """SQLite gets UTC text, 0/1 and compact JSON text; PostgreSQL the values themselves."""
    lite, pg = Statements("sqlite"), Statements("postgresql")
    dubai = datetime(2025, 3, 1, 16, 0, 0, 5, tzinfo=timezone(timedelta(hours=4)))
    assert lite.ts(dubai) == "2025-03-01 12:00:00.000005"
    assert (lite.ts(None), pg.ts(dubai)) == (None, dubai)
    assert (lite.boolean(True), lite.boolean(False), pg.boolean(True)) == (1, 0, True)
    assert lite.json({"a": [1, "é"]}) == '{"a":[1,"\\u00e9"]}'
    assert (lite.json(None), pg.json(None)) == (None, None)
    assert pg.json({"a": 1}).obj == {"a": 1}


def test_timestamps_read_back_are_aware_utc() -> None:
    """read_ts turns SQLite text and naive datetimes into aware UTC datetimes."""
    lite = Statements("sqlite")
    assert lite.read_ts("2025-03-01 12:00:00.123456") == T0
    assert lite.read_ts(T0.replace(tzinfo=None)) == T0
    assert lite.read_ts(T0) is T0
    assert lite.read_ts(None) is None


class Recorder:
    """A connection that records the driver-level statements it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def exec_driver_sql(self, sql: str, params: Any) -> list[Any]:
        self.calls.append((sql, params))
        return []


def test_bulk_sends_one_statement_per_batch_within_the_parameter_limit() -> None:
    """Rows go out in multi-row statements of at most MAX_PARAMS parameters each."""
    lite = Statements("sqlite")
    width = len(VisitClose._fields)
    per_statement = st.MAX_PARAMS // width
    rows = [VisitClose(id=n, exited_at="t", duration_seconds=1.0)
            for n in range(per_statement + 5)]
    conn = Recorder()
    lite.bulk(conn, lite.close_visits, rows)  # type: ignore[arg-type]
    assert [len(params) for _, params in conn.calls] == [per_statement * width, 5 * width]
    assert conn.calls[1][0].count("(?, ?, ?)") == 5
    assert conn.calls[1][1][:3] == (per_statement, "t", 1.0)
    lite.bulk(conn, lite.close_visits, [])  # type: ignore[arg-type]
    assert len(conn.calls) == 2


def test_rows_written_raw_read_back_the_same_through_sqlalchemy(any_engine: Engine) -> None:
    """Sessions and visits sent through the driver read back equal through the tables."""
    engine = any_engine
    with engine.begin() as conn:
        sql = statements(conn)
        sql.bulk(conn, sql.insert_sessions, [
            SessionInsert(session_id=SID, user_id="77", email="a@example.com", phone=None,
                          ip_address="203.0.113.0", user_agent="UA", is_active=sql.boolean(True),
                          started_at=sql.ts(T0), last_activity=sql.ts(T0 + timedelta(seconds=5)),
                          ended_at=None, current_page_type="product",
                          current_page_identifier="p-1", platform="ios",
                          app_version="4.2.1"),
        ])
        sql.bulk(conn, sql.insert_visits, [
            VisitInsert(session_id=SID, page_type="homepage", page_identifier=None,
                        page_url="https://shop.example/", entered_at=sql.ts(T0),
                        exited_at=sql.ts(T0 + timedelta(seconds=5)), duration_seconds=5.0,
                        is_active=sql.boolean(False)),
            VisitInsert(session_id=SID, page_type="product", page_identifier="p-1",
                        page_url=None, entered_at=sql.ts(T0 + timedelta(seconds=5)),
                        exited_at=None, duration_seconds=None, is_active=sql.boolean(True)),
        ])
    with engine.connect() as conn:
        session = conn.execute(select(sessions_t)).one()._asdict()
        visits = [r._asdict() for r in conn.execute(select(visits_t).order_by(visits_t.c.id))]
    assert {k: session[k] for k in ("session_id", "user_id", "is_active", "started_at",
                                     "last_activity", "ended_at", "current_page_type",
                                     "platform", "app_version")} == {
        "session_id": SID, "user_id": "77", "is_active": True, "started_at": T0,
        "last_activity": T0 + timedelta(seconds=5), "ended_at": None,
        "current_page_type": "product", "platform": "ios", "app_version": "4.2.1",
    }
    assert [(v["page_type"], v["entered_at"], v["exited_at"], v["duration_seconds"],
             v["is_active"]) for v in visits] == [
        ("homepage", T0, T0 + timedelta(seconds=5), 5.0, False),
        ("product", T0 + timedelta(seconds=5), None, None, True),
    ]


def test_load_sessions_gives_each_session_with_its_open_visit(any_engine: Engine) -> None:
    """A known session comes with its open visit's start; one without an open visit with None."""
    engine = any_engine
    with engine.begin() as conn:
        sql = statements(conn)
        sessions = [
            SessionInsert(session_id=sid, user_id=None, email=None, phone=None, ip_address=None,
                          user_agent=None, is_active=sql.boolean(True), started_at=sql.ts(T0),
                          last_activity=sql.ts(T0), ended_at=None, current_page_type=None,
                          current_page_identifier=None, platform=None, app_version=None)
            for sid in (SID, OTHER)
        ]
        sql.bulk(conn, sql.insert_sessions, sessions)
        sql.bulk(conn, sql.insert_visits, [
            VisitInsert(session_id=SID, page_type="search", page_identifier=None, page_url=None,
                        entered_at=sql.ts(T0), exited_at=None, duration_seconds=None,
                        is_active=sql.boolean(True)),
        ])
        loaded = {row.session_id: row for row in sql.load_sessions(conn, [SID, OTHER, "nope"])}
        assert set(loaded) == {SID, OTHER}
        assert sql.read_ts(loaded[SID].open_visit_entered_at) == T0
        assert loaded[OTHER].open_visit_entered_at is None

        visit_id = loaded[SID].open_visit_id
        assert visit_id == conn.execute(select(visits_t.c.id)).scalar_one()
        sql.bulk(conn, sql.close_visits, [
            VisitClose(id=visit_id, exited_at=sql.ts(T0 + timedelta(seconds=9)),
                       duration_seconds=9.0),
        ])
        closed = conn.execute(select(visits_t.c.is_active, visits_t.c.exited_at,
                                     visits_t.c.duration_seconds)).one()
        assert tuple(closed) == (False, T0 + timedelta(seconds=9), 9.0)
        assert sql.load_sessions(conn, [SID])[0].open_visit_entered_at is None


def _visit(sid: str, **values: Any) -> Any:
    row = {"session_id": sid, "page_type": "search", "page_identifier": None, "page_url": None,
           "entered_at": T0, "exited_at": None, "duration_seconds": None, "is_active": True,
           **values}
    return VisitInsert(**row)


def test_queued_writes_run_in_order_and_fail_as_sqlalchemy_errors(any_engine: Engine) -> None:
    """Writes: what is queued runs in order at send(); a refusal is SQLAlchemy's error type
    with the driver's own error inside (the writer sorts outages from refusals by them),
    and nothing of the transaction is kept."""
    engine = any_engine
    with engine.begin() as conn:
        sql = statements(conn)
        writes = sql.writes(conn)
        writes.bulk(sql.insert_visits, [_visit(SID)])
        writes.send()
        first = conn.execute(select(visits_t.c.id)).scalar_one()
        writes.bulk(sql.close_visits, [VisitClose(first, sql.ts(T0 + timedelta(seconds=3)), 3.0)])
        writes.bulk(sql.insert_visits, [_visit(SID, page_type="product", is_active=True)])
        writes.send()
        rows = conn.execute(select(visits_t.c.page_type, visits_t.c.is_active,
                                   visits_t.c.duration_seconds).order_by(visits_t.c.id)).all()
    assert [tuple(r) for r in rows] == [("search", False, 3.0), ("product", True, None)]
    session = SessionInsert(
        session_id=SID, user_id=None, email=None, phone=None, ip_address=None, user_agent=None,
        is_active=True, started_at=T0, last_activity=T0, ended_at=None, current_page_type=None,
        current_page_identifier=None, platform=None, app_version=None)
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        sql = statements(conn)
        session = session._replace(is_active=sql.boolean(True), started_at=sql.ts(T0),
                                   last_activity=sql.ts(T0))
        writes = sql.writes(conn)
        writes.bulk(sql.insert_visits, [_visit(OTHER)])
        writes.bulk(sql.insert_sessions, [session, session])  # the same session_id twice
        writes.send()
    if engine.dialect.name == "postgresql":
        assert caught.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(visits_t)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(sessions_t)).scalar_one() == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_refuses_an_overlong_value_sent_in_the_pipeline(any_engine: Engine) -> None:
    """A value too long for its column is refused through the pipeline too, and nothing
    of the batch is kept."""
    engine = any_engine
    with pytest.raises(DBAPIError, match="too long"), engine.begin() as conn:
        sql = statements(conn)
        writes = sql.writes(conn)
        writes.bulk(sql.insert_visits, [_visit(SID, page_url="https://shop.example/" + "x" * 3000)])
        writes.send()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(visits_t)).scalar_one() == 0


def test_postgres_placeholders_are_numbered_once_per_text() -> None:
    """The pipeline's raw cursor takes $n placeholders: numbered here, in order, and the
    multi-row texts per row count (psycopg would parse each long text anew)."""
    pg = Statements("postgresql")
    assert pg.numbered(pg.change_session_state) == (
        "UPDATE user_sessions SET is_active = $1, ended_at = $2 WHERE session_id = $3"
    )
    assert pg.numbered("SELECT 1") == "SELECT 1"
    rows = [VisitClose(id=n, exited_at=T0, duration_seconds=1.0) for n in range(2)]
    [(sql, params)] = pg.chunks(pg.close_visits, rows, numbered=True)
    assert "(VALUES ($1, $2, $3), ($4, $5, $6))" in sql and "%s" not in sql
    assert params == (0, T0, 1.0, 1, T0, 1.0)
    assert next(pg.chunks(pg.close_visits, rows, numbered=True))[0] is sql  # kept
    with pytest.raises(ValueError, match="with placeholders"):
        next(pg.chunks("INSERT INTO t (a) VALUES {rows} RETURNING %s", rows, numbered=True))
