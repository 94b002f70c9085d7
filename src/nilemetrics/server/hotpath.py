"""Driver-level SQL for the few statements every event runs.

SQLAlchemy's per-row bind processing (type decorators, datetime-to-text on
SQLite, JSON encoding) costs more than the database work itself at thousands
of events per second, and it runs while holding the GIL that the HTTP side
needs. These statements send plain tuples through the DBAPI's ``executemany``
instead, converted once here, in the formats SQLAlchemy itself uses to store
them, so every other reader (ORM, Core, reports) sees the same values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import Connection


class HotSql:
    """The hot statements and value conversions for one dialect."""

    def __init__(self, dialect_name: str) -> None:
        self.pg = dialect_name == "postgresql"
        p = "%s" if self.pg else "?"

        def marks(n: int) -> str:
            return ", ".join([p] * n)

        self._p = p
        self.insert_events = (
            "INSERT INTO events (event_id, event_type, session_id, occurred_at, payload) "
            f"VALUES ({marks(5)})"
        )
        self.insert_sessions = (
            "INSERT INTO user_sessions (session_id, user_id, email, phone, ip_address, "
            "user_agent, is_active, started_at, last_activity, ended_at, current_page_type, "
            f"current_page_identifier) VALUES ({marks(12)})"
        )
        # Only the columns an event changes: SET on an indexed column rewrites its
        # index entry even when the value is unchanged.
        self.update_sessions = (
            f"UPDATE user_sessions SET last_activity = {p}, current_page_type = {p}, "
            f"current_page_identifier = {p} WHERE session_id = {p}"
        )
        # Rare (a session ends or comes back): ended_at is indexed.
        self.update_session_state = (
            f"UPDATE user_sessions SET is_active = {p}, ended_at = {p} WHERE session_id = {p}"
        )
        self.update_session_client = (
            f"UPDATE user_sessions SET ip_address = {p}, user_agent = {p} WHERE session_id = {p}"
        )
        self.close_visits = (
            f"UPDATE page_visits SET exited_at = {p}, duration_seconds = {p}, "
            f"is_active = {self.false} WHERE session_id = {p} AND is_active = {self.true}"
        )
        self.insert_visits = (
            "INSERT INTO page_visits (session_id, page_type, page_identifier, page_url, "
            f"entered_at, exited_at, duration_seconds, is_active) VALUES ({marks(8)})"
        )
        self._select_cache: dict[int, str] = {}

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
                "LEFT JOIN page_visits v ON v.session_id = s.session_id "
                f"AND v.is_active = {self.true} "
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
