"""Driver-level SQL for the few statements every event runs, built from the tables.

SQLAlchemy's per-row bind processing (type decorators, datetime-to-text on
SQLite, JSON encoding) costs more than the database work itself at thousands
of events per second, and it runs while holding the GIL that the HTTP side
needs. These statements send plain values through the DBAPI, one multi-row
statement per batch, converted once here into the formats SQLAlchemy itself uses
to store them, so every other reader (ORM, Core, reports) sees the same values.

Every statement is built from the table definitions (``server/tables.py``) and a
row type naming its columns: a row is made with keywords (``VisitInsert(
session_id=..., page_type=...)``), so a value can never land in the wrong
column, and a column that does not exist fails at import.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from nilemetrics.server.tables import events_t, sessions_t, visits_t

#: Most parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
MAX_PARAMS = 30_000
#: Most statement texts kept with numbered placeholders (one per template and row count).
_MAX_NUMBERED = 4096


def _row_type(table: Table, name: str, columns: Sequence[str]) -> type[Any]:
    """A named tuple of ``columns``, each checked to be a column of ``table``."""
    unknown = [column for column in columns if column not in table.c]
    if unknown:
        raise LookupError(f"{table.name} has no column(s) {unknown}")
    row: type[Any] = namedtuple(name, columns)  # type: ignore[misc]
    row.table = table  # type: ignore[attr-defined]
    return row


#: A row of the event log.
EventInsert = _row_type(
    events_t, "EventInsert",
    ("event_id", "event_type", "session_id", "occurred_at", "payload", "name"),
)
#: A new session.
SessionInsert = _row_type(
    sessions_t,
    "SessionInsert",
    ("session_id", "user_id", "email", "phone", "ip_address", "user_agent", "is_active",
     "started_at", "last_activity", "ended_at", "current_page_type", "current_page_identifier",
     "platform", "app_version"),
)
#: What every event changes in its session: only these columns, as SET on an indexed
#: column rewrites its index entry even when the value is unchanged.
SessionTouch = _row_type(
    sessions_t,
    "SessionTouch",
    ("session_id", "last_activity", "current_page_type", "current_page_identifier"),
)
#: A session ending or coming back (rare; ``ended_at`` is indexed).
SessionStateChange = _row_type(
    sessions_t, "SessionStateChange", ("session_id", "is_active", "ended_at")
)
#: The client's contact fields and address filled in (rarer still).
SessionContact = _row_type(
    sessions_t,
    "SessionContact",
    ("session_id", "user_id", "email", "phone", "ip_address", "user_agent"),
)
#: The platform and app version a session/start names for a known session (rare).
SessionPlatform = _row_type(
    sessions_t, "SessionPlatform", ("session_id", "platform", "app_version")
)
#: A new page visit.
VisitInsert = _row_type(
    visits_t,
    "VisitInsert",
    ("session_id", "page_type", "page_identifier", "page_url", "entered_at", "exited_at",
     "duration_seconds", "is_active"),
)
#: A session's open visit closed, by its id.
VisitClose = _row_type(visits_t, "VisitClose", ("id", "exited_at", "duration_seconds"))


class SessionRow(NamedTuple):
    """A session as loaded for a batch, with its open page visit's start."""

    session_id: str
    is_active: Any
    started_at: Any
    last_activity: Any
    ended_at: Any
    current_page_type: str | None
    current_page_identifier: str | None
    user_id: str | None
    email: str | None
    phone: str | None
    ip_address: str | None
    user_agent: str | None
    open_visit_id: int | None
    open_visit_entered_at: Any


#: The columns loaded, in the row's order (all but the open visit's id and start).
_SESSION_COLUMNS = _row_type(sessions_t, "_Loaded", SessionRow._fields[:-2])._fields


def _columns(row: type[Any]) -> tuple[str, ...]:
    fields: tuple[str, ...] = row._fields
    return fields


def _insert(row: type[Any]) -> str:
    return f"INSERT INTO {row.table.name} ({', '.join(_columns(row))}) VALUES {{rows}}"


def _update_from_values(row: type[Any], *, table_alias: str = "", index_hint: str = "") -> str:
    """``UPDATE table SET col = v.col, … FROM (VALUES {rows}) v WHERE table.key = v.key``.

    The first column of ``row`` is the key; the others are set.
    """
    key, *rest = _columns(row)
    name = row.table.name
    sets = ", ".join(f"{column} = v.{column}" for column in rest)
    return (
        f"WITH v({', '.join(_columns(row))}) AS (VALUES {{rows}}) "
        f"UPDATE {name}{index_hint} SET {sets} FROM v WHERE {name}.{key} = v.{key}"
    )


def _update_one(row: type[Any], placeholder: str) -> str:
    key, *rest = _columns(row)
    sets = ", ".join(f"{column} = {placeholder}" for column in rest)
    return f"UPDATE {row.table.name} SET {sets} WHERE {key} = {placeholder}"


def one_row_params(row: Any) -> tuple[Any, ...]:
    """Parameters of an ``_update_one`` statement: the set columns, then the key."""
    return (*row[1:], row[0])


@contextmanager
def driver_errors(conn: Connection, statement: str) -> Iterator[None]:
    """psycopg's errors raised past SQLAlchemy, as SQLAlchemy would have raised them.

    The writer tells outages, refusals and a full disk apart by SQLAlchemy's exception
    types; a connection that broke is invalidated, as SQLAlchemy does, so the pool
    opens a new one instead of handing out a dead one.
    """
    try:
        yield
    except psycopg.Error as exc:
        raw: Any = conn.connection.dbapi_connection
        broken = conn.dialect.is_disconnect(exc, raw, None)  # type: ignore[arg-type]
        if broken:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, psycopg.Error, hide_parameters=True,
            connection_invalidated=broken, dialect=conn.dialect,
        ) from exc


class Statements:
    """The hot statements and value conversions for one dialect."""

    def __init__(self, dialect_name: str) -> None:
        self.pg = dialect_name == "postgresql"
        p = "%s" if self.pg else "?"
        self._p = p
        # Multi-row statements: "{rows}" becomes "(?, ?), (?, ?), …". One statement per
        # batch instead of one per row matters beyond the round trips: sqlite3 releases
        # and re-takes the GIL around every row it steps, and each re-take can wait for
        # the event loop's switch interval.
        self.insert_events = _insert(EventInsert)
        self.insert_sessions = _insert(SessionInsert)
        self.touch_sessions = _update_from_values(SessionTouch)
        self.insert_visits = _insert(VisitInsert)
        self.change_session_state = _update_one(SessionStateChange, p)
        self.change_session_contact = _update_one(SessionContact, p)
        # What a start does not name is kept (an app may send only its new version).
        self.change_session_platform = (
            f"UPDATE user_sessions SET platform = COALESCE({p}, platform), "
            f"app_version = COALESCE({p}, app_version) WHERE session_id = {p}"
        )
        # A session's open visit is its latest visit, if that is still open: one seek on
        # ix_page_visits_session, never a walk through its history. It is closed by its
        # id; on PostgreSQL no index names the columns a close sets, so the update is
        # HOT (SQLite rewrites one entry, of its covering time-on-page index).
        if self.pg:
            # Each by a LATERAL probe of the primary key (OFFSET 0 keeps the planner from
            # flattening it back into a join, which it hashed by walking all of
            # page_visits whenever its statistics lagged behind a growing table).
            self.close_visits = (
                "WITH v(id, exited_at, duration_seconds) AS (VALUES {rows}) "
                "UPDATE page_visits SET exited_at = v.exited_at, "
                "duration_seconds = v.duration_seconds, is_active = false "
                "FROM v CROSS JOIN LATERAL (SELECT o.id FROM page_visits o "
                "WHERE o.id = v.id AND o.is_active = true OFFSET 0) o "
                "WHERE page_visits.id = o.id"
            )
        else:
            self.close_visits = (
                "WITH v(id, exited_at, duration_seconds) AS (VALUES {rows}) "
                "UPDATE page_visits SET exited_at = v.exited_at, "
                "duration_seconds = v.duration_seconds, is_active = 0 FROM v "
                "WHERE page_visits.id = v.id AND page_visits.is_active = 1"
            )
        # Ordered by both of the index's columns: no other index gives that order. On
        # PostgreSQL a LATERAL probe (its LIMIT keeps the planner from flattening it):
        # written as a join on the subquery's result, its prepared (generic) plan
        # under the ingest benchmark hashed all open visits, found by walking the
        # whole primary key, for every batch (6.7 ms instead of 0.2 for 12 sessions).
        if self.pg:
            open_join = (
                "LEFT JOIN LATERAL (SELECT o.id, o.entered_at, o.is_active FROM page_visits o "
                "WHERE o.session_id = s.session_id ORDER BY o.session_id DESC, o.id DESC "
                "LIMIT 1) v ON v.is_active"
            )
        else:
            # SQLite, without statistics, is told the index (as the open-visits one was).
            open_join = (
                "LEFT JOIN page_visits v ON v.id = (SELECT o.id FROM page_visits o "
                "INDEXED BY ix_page_visits_session "
                "WHERE o.session_id = s.session_id ORDER BY o.session_id DESC, o.id DESC "
                "LIMIT 1) AND v.is_active = 1"
            )
        self._select_sessions = (
            f"SELECT {', '.join('s.' + column for column in _SESSION_COLUMNS)}, "
            "v.id, v.entered_at "
            f"FROM user_sessions s {open_join} WHERE s.session_id IN ({{ids}})"
        )
        if self.pg:
            # Several server processes may hold events of one session: serialise them.
            self._select_sessions = (
                self._select_sessions.replace("IN ({ids})", "= ANY($1::VARCHAR[])")
                + " ORDER BY s.session_id FOR UPDATE OF s"
            )
        self._select_cache: dict[int, str] = {}
        self._rows_cache: dict[tuple[int, int], str] = {}
        self._numbered_cache: dict[tuple[str, int], str] = {}
        self._numbered_one: dict[str, str] = {}

    def _rows(self, n: int, width: int) -> str:
        key = (n, width)
        text = self._rows_cache.get(key)
        if text is None:
            one = "(" + ", ".join([self._p] * width) + ")"
            text = self._rows_cache[key] = ", ".join([one] * n)
        return text

    def bulk(self, conn: Connection, template: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run a ``{rows}`` statement for all rows, as few statements as the limits allow."""
        for sql, params in self.chunks(template, rows):
            conn.exec_driver_sql(sql, params)

    def chunks(
        self, template: str, rows: Sequence[tuple[Any, ...]], *, numbered: bool = False
    ) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """The statements and parameters that write ``rows`` with a ``{rows}`` template.

        ``numbered`` (PostgreSQL): ``$1, $2, …`` placeholders, for a raw cursor.
        """
        if not rows:
            return
        width = len(rows[0])
        step = max(1, MAX_PARAMS // width)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            if numbered:
                sql = self._numbered_chunk(template, len(chunk), width)
            else:
                sql = template.replace("{rows}", self._rows(len(chunk), width))
            yield sql, tuple(value for row in chunk for value in row)

    def _numbered_chunk(self, template: str, n: int, width: int) -> str:
        key = (template, n)
        sql = self._numbered_cache.get(key)
        if sql is None:
            if "%s" in template:
                raise ValueError(f"a {{rows}} template with placeholders: {template[:60]!r}")
            ones = (
                "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
                for row in range(n)
            )
            sql = template.replace("{rows}", ", ".join(ones))
            if len(self._numbered_cache) < _MAX_NUMBERED:
                self._numbered_cache[key] = sql
        return sql

    def numbered(self, sql: str) -> str:
        """``sql`` with its ``%s`` placeholders as ``$1, $2, …`` (PostgreSQL, a raw cursor)."""
        found = self._numbered_one.get(sql)
        if found is None:
            parts = sql.split("%s")
            found = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
            if len(self._numbered_one) < _MAX_NUMBERED:
                self._numbered_one[sql] = found
        return found

    def each(self, conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run a one-row ``_update_one`` statement for each row (key last, see one_row_params)."""
        if rows:
            conn.exec_driver_sql(sql, [one_row_params(row) for row in rows])

    def load_sessions(self, conn: Connection, session_ids: Sequence[str]) -> list[SessionRow]:
        """Sessions by id, each with its open page visit's start (if any).

        PostgreSQL: in a pipeline, so that a transaction's BEGIN goes out with it
        instead of taking a round trip of its own.
        """
        if self.pg:
            sql = self._select_sessions
            raw: Any = conn.connection.dbapi_connection
            with driver_errors(conn, sql), raw.pipeline(), psycopg.RawCursor(raw) as cursor:
                cursor.execute(sql, (list(session_ids),))
                return [SessionRow._make(row) for row in cursor.fetchall()]
        n = len(session_ids)
        text = self._select_cache.get(n)
        if text is None:
            text = self._select_cache[n] = self._select_sessions.replace(
                "{ids}", ", ".join([self._p] * n)
            )
        return [SessionRow._make(row) for row in conn.exec_driver_sql(text, tuple(session_ids))]

    def writes(self, conn: Connection) -> Writes:
        """A batch's writes that need no answer, sent together (see :class:`Writes`)."""
        return Writes(self, conn)

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


class Writes:
    """The writes of a batch that need no answer: on PostgreSQL, one round trip for all.

    Each statement waited for its answer before the next went out, and each wait
    is a trip through both processes' schedulers: on a busy machine the writer spent
    most of a batch waiting. Here they are queued, in order, and :meth:`send` sends
    them in one psycopg pipeline, raising the first error as SQLAlchemy would.
    On SQLite, which has no round trips, each runs at once.

    PostgreSQL's statements go out through a raw cursor, with ``$n`` placeholders
    numbered here once per text: psycopg converts ``%s`` texts itself, but keeps
    only those of up to 50 parameters, so a batch's multi-row texts were parsed
    anew every time (a fifth of the writer process's samples).
    """

    def __init__(self, sql: Statements, conn: Connection) -> None:
        self._sql = sql
        self._conn = conn
        self._queued: list[tuple[str, Any, bool]] = []

    @property
    def statements(self) -> Statements:
        """The dialect's statements and value conversions."""
        return self._sql

    def bulk(self, template: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue a multi-row statement (see :meth:`Statements.bulk`)."""
        for sql, params in self._sql.chunks(template, rows, numbered=self._sql.pg):
            self._add(sql, params)

    def each(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue a one-row statement for each row (see :meth:`Statements.each`)."""
        if rows:
            self._add(self._placeholders(sql), [one_row_params(row) for row in rows], many=True)

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        """Queue one statement (placeholders ``%s`` on PostgreSQL, ``?`` on SQLite)."""
        self._add(self._placeholders(sql), params)

    def _placeholders(self, sql: str) -> str:
        return self._sql.numbered(sql) if self._sql.pg else sql

    def _add(self, sql: str, params: Any, *, many: bool = False) -> None:
        """SQLite: run it now (a list of rows: executemany). PostgreSQL: queue it."""
        if self._sql.pg:
            self._queued.append((sql, params, many))
        else:
            self._conn.exec_driver_sql(sql, params)

    def send(self) -> None:
        """Run what is queued, in order; the first error is raised (the rest are skipped)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        raw: Any = self._conn.connection.dbapi_connection
        with (
            driver_errors(self._conn, f"{len(queued)} pipelined statements"),
            raw.pipeline(),
            psycopg.RawCursor(raw) as cursor,
        ):
            for sql, params, many in queued:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)


_CACHE: dict[str, Statements] = {}


def statements(conn: Connection) -> Statements:
    """The (cached) hot statements for this connection's dialect."""
    name = conn.dialect.name
    found = _CACHE.get(name)
    if found is None:
        found = _CACHE[name] = Statements(name)
    return found
