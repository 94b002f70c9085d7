"""Driver-level SQL for the few statements every event runs.

SQLAlchemy's per-row bind processing (type decorators, datetime-to-text on
SQLite, JSON encoding) costs more than the database work itself at thousands
of events per second, and it runs while holding the GIL that the HTTP side
needs. These statements send plain values through the DBAPI, one multi-row
statement per batch, converted once here into the formats SQLAlchemy itself uses
to store them, so every other reader (ORM, Core, reports) sees the same values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection

#: Most parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
MAX_PARAMS = 30_000


class HotSql:
    """The hot statements and value conversions for one dialect."""

    def __init__(self, dialect_name: str) -> None:
        self.pg = dialect_name == "postgresql"
        p = "%s" if self.pg else "?"
        self._p = p
        # Multi-row statements: "{rows}" becomes "(?, ?), (?, ?), …". One statement per
        # batch instead of one per row matters beyond the round trips: sqlite3 releases
        # and re-takes the GIL around every row it steps, and each re-take can wait for
        # the event loop's switch interval.
        self.insert_events = (
            "INSERT INTO events (event_id, event_type, session_id, occurred_at, payload) "
            "VALUES {rows}"
        )
        self.insert_sessions = (
            "INSERT INTO user_sessions (session_id, user_id, email, phone, ip_address, "
            "user_agent, is_active, started_at, last_activity, ended_at, current_page_type, "
            "current_page_identifier) VALUES {rows}"
        )
        # Only the columns an event changes: SET on an indexed column rewrites its
        # index entry even when the value is unchanged.
        self.update_sessions = (
            "WITH v(sid, la, pt, pi) AS (VALUES {rows}) "
            "UPDATE user_sessions SET last_activity = v.la, current_page_type = v.pt, "
            "current_page_identifier = v.pi FROM v WHERE user_sessions.session_id = v.sid"
        )
        # The open visit is found through the small partial index of open visits,
        # never by walking a session's whole history (SQLite, without statistics,
        # would pick the plain session_id index, so it is named).
        open_index = "" if self.pg else " INDEXED BY ix_page_visits_open"
        if self.pg:
            # Each session's open visits through a LATERAL probe of the partial index
            # (OFFSET 0 keeps the planner from flattening it back into a join):
            # joined plainly, the planner scanned all of page_visits whenever its
            # statistics lagged behind a growing table (a fresh or busy database),
            # and the scan grew with the history (15 ms per 64-event batch at 55k
            # visits instead of 9 ms).
            self.close_visits = (
                "WITH v(sid, ex, dur) AS (VALUES {rows}) "
                "UPDATE page_visits SET exited_at = v.ex, duration_seconds = v.dur, "
                "is_active = false FROM v CROSS JOIN LATERAL (SELECT o.id FROM page_visits o "
                "WHERE o.session_id = v.sid AND o.is_active = true OFFSET 0) o "
                "WHERE page_visits.id = o.id"
            )
        else:
            self.close_visits = (
                "WITH v(sid, ex, dur) AS (VALUES {rows}) "
                f"UPDATE page_visits{open_index} SET exited_at = v.ex, "
                "duration_seconds = v.dur, is_active = 0 FROM v "
                "WHERE page_visits.session_id = v.sid AND page_visits.is_active = 1"
            )
        self.insert_visits = (
            "INSERT INTO page_visits (session_id, page_type, page_identifier, page_url, "
            "entered_at, exited_at, duration_seconds, is_active) VALUES {rows}"
        )
        # Rare (a session ends or comes back; ended_at is indexed) and rarer (the
        # client's address is filled in): one row at a time is fine.
        self.update_session_state = (
            f"UPDATE user_sessions SET is_active = {p}, ended_at = {p} WHERE session_id = {p}"
        )
        self.update_session_client = (
            f"UPDATE user_sessions SET user_id = {p}, email = {p}, phone = {p}, "
            f"ip_address = {p}, user_agent = {p} WHERE session_id = {p}"
        )
        self._open_index = open_index
        # PostgreSQL: a LATERAL probe of the open-visits index (see close_visits).
        self._open_join = (
            "LEFT JOIN LATERAL (SELECT o.entered_at FROM page_visits o "
            "WHERE o.session_id = s.session_id AND o.is_active = true OFFSET 0) v ON true"
            if self.pg
            else f"LEFT JOIN page_visits v{open_index} ON v.session_id = s.session_id "
            "AND v.is_active = 1"
        )
        self._select_cache: dict[int, str] = {}
        self._rows_cache: dict[tuple[int, int], str] = {}

    def _rows(self, n: int, width: int) -> str:
        key = (n, width)
        text = self._rows_cache.get(key)
        if text is None:
            one = "(" + ", ".join([self._p] * width) + ")"
            text = self._rows_cache[key] = ", ".join([one] * n)
        return text

    def bulk(self, conn: Connection, template: str, rows: list[tuple[Any, ...]]) -> None:
        """Run a ``{rows}`` statement for all rows, as few statements as the limits allow."""
        if not rows:
            return
        width = len(rows[0])
        step = max(1, MAX_PARAMS // width)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            sql = template.replace("{rows}", self._rows(len(chunk), width))
            conn.exec_driver_sql(sql, tuple(value for row in chunk for value in row))

    @property
    def false(self) -> str:
        """The literal for false in this dialect."""
        return "false" if self.pg else "0"

    @property
    def true(self) -> str:
        """The literal for true, spelled as the partial indexes' WHERE clauses are."""
        return "true" if self.pg else "1"

    def select_sessions(self, n: int) -> str:
        """Sessions by id, each with its open page visit's start (if any)."""
        sql = self._select_cache.get(n)
        if sql is None:
            sql = (
                "SELECT s.session_id, s.is_active, s.started_at, s.last_activity, s.ended_at, "
                "s.current_page_type, s.current_page_identifier, s.user_id, s.email, s.phone, "
                "s.ip_address, s.user_agent, v.entered_at FROM user_sessions s "
                f"{self._open_join} "
                f"WHERE s.session_id IN ({', '.join([self._p] * n)})"
            )
            if self.pg:
                # Several server processes may hold events of one session: serialise them.
                sql += " ORDER BY s.session_id FOR UPDATE OF s"
            self._select_cache[n] = sql
        return sql

    def ts(self, value: datetime | None) -> Any:
        """A UTC datetime as the driver should receive it."""
        if value is None or self.pg:
            return value
        # SQLAlchemy's SQLite storage format for DateTime, in UTC.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def read_ts(self, value: Any) -> datetime | None:
        """A timestamp read back through the driver, as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def boolean(self, value: bool) -> Any:
        """A boolean as the driver should receive it."""
        return value if self.pg else int(value)

    def json(self, value: Any) -> Any:
        """A JSON document as the driver should receive it."""
        if value is None:
            return None
        return Jsonb(value) if self.pg else json.dumps(value, separators=(",", ":"))

    @staticmethod
    def executemany(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for many rows on the raw DBAPI cursor of ``conn``."""
        if rows:
            conn.exec_driver_sql(sql, rows)

    @staticmethod
    def fetchall(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Run a query with positional parameters; all rows as tuples."""
        return list(conn.exec_driver_sql(sql, params).all())


_CACHE: dict[str, HotSql] = {}


def hot_sql(conn: Connection) -> HotSql:
    """The (cached) hot statements for this connection's dialect."""
    name = conn.dialect.name
    found = _CACHE.get(name)
    if found is None:
        found = _CACHE[name] = HotSql(name)
    return found
