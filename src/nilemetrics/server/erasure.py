"""GDPR erasure and access: find everything stored about one person, remove or collect it.

The one implementation behind ``nilemetrics forget``, ``nilemetrics export
--email`` and ``DELETE /api/metrics/subjects``. A person is named by email,
phone, user id and/or session id; their sessions are those whose session or
checkout rows carry one of these. Every row of those sessions is deleted, and
any other row whose JSON or URL/message text mentions their email or phone is
scrubbed (the mention replaced by ``[erased]``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from nilemetrics.protocol import wire_time
from nilemetrics.server.tables import (
    audit_t,
    checkouts_t,
    errors_t,
    events_t,
    sessions_t,
    visits_t,
)

ERASURE_KEY_FILE = "erasure-key"
REDACTED = "[erased]"
#: Tables in the order their rows are deleted (children before the session row).
TABLES = ("page_visits", "payment_errors", "checkout_sessions", "events", "user_sessions")
_BY_NAME: dict[str, Table] = {
    "page_visits": visits_t,
    "payment_errors": errors_t,
    "checkout_sessions": checkouts_t,
    "events": events_t,
    "user_sessions": sessions_t,
}
# Columns of other people's rows that may quote someone's email or phone.
_SCRUB_COLUMNS: tuple[tuple[Table, str], ...] = (
    (checkouts_t, "checkout_items"),
    (errors_t, "error_details"),
    (errors_t, "error_message"),
    (errors_t, "page_url"),
    (events_t, "payload"),
    (visits_t, "page_url"),
)
# SQLite's default limit on bound parameters is generous, but stay well below it.
_IN_CHUNK = 500


class SubjectError(ValueError):
    """The request does not name a person (no selector given)."""


@dataclass(frozen=True)
class Subject:
    """Who is to be forgotten or exported: any combination of the four selectors."""

    email: str | None = None
    phone: str | None = None
    user_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        # Surrounding blanks come from copy-paste; an email's case never matters.
        for name in ("email", "phone", "user_id", "session_id"):
            value = getattr(self, name)
            if value is not None:
                value = value.strip() or None
                if name == "email" and value is not None:
                    value = value.lower()
                object.__setattr__(self, name, value)
        if not self.selectors():
            raise SubjectError("name the person: give an email, phone, user id or session id")

    def selectors(self) -> list[str]:
        """The selector names given, e.g. ``["email"]`` (no values: safe to log)."""
        return [
            name
            for name in ("email", "phone", "user_id", "session_id")
            if getattr(self, name) is not None
        ]

    def canonical(self) -> str:
        """A stable text naming the subject, the input of the keyed hash."""
        return "\n".join(f"{name}={getattr(self, name)}" for name in self.selectors())

    def needles(self) -> list[str]:
        """Texts whose appearance in a stored value identifies this person."""
        return needles_for([self.email, self.phone])


def needles_for(values: list[str | None]) -> list[str]:
    """Each email/phone as typed, URL-encoded (``%40`` in query strings) and JSON-escaped."""
    found: list[str] = []
    for value in values:
        if not value:
            continue
        for form in (value, quote(value, safe=""), json.dumps(value)[1:-1]):
            if form not in found:
                found.append(form)
    return found


def _contacts(conn: Connection, session_ids: list[str]) -> list[str | None]:
    """The emails and phones stored on these sessions and their checkouts."""
    found: list[str | None] = []
    for chunk in _chunks(session_ids):
        for table in (sessions_t, checkouts_t):
            for email, phone in conn.execute(
                select(table.c.email, table.c.phone).where(table.c.session_id.in_(chunk))
            ):
                found.extend((email, phone))
    return found


@dataclass
class ErasureResult:
    """What an erasure removed, per table, and the keyed hash it was audited under."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    scrubbed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    sessions: int = 0
    subject_hash: str = ""

    @property
    def total(self) -> int:
        """Rows deleted or scrubbed in all tables."""
        return sum(self.deleted.values()) + sum(self.scrubbed.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys, as the API answers)."""
        return {
            "deleted": dict(self.deleted),
            "scrubbed": dict(self.scrubbed),
            "sessions": self.sessions,
            "subjectHash": self.subject_hash,
        }


def ensure_erasure_key(config_dir: Path) -> bytes:
    """The secret that keys audit hashes: generated once in the config dir, mode 0600."""
    path = config_dir / ERASURE_KEY_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    config_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process created it in the meantime: use theirs.
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    return key


def subject_hash(key: bytes, subject: Subject) -> str:
    """HMAC-SHA256 of the subject: proves later what was asked, without storing it."""
    digest = hmac.new(key, subject.canonical().encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def _match(table: Table, subject: Subject) -> ColumnElement[bool]:
    c = table.c
    conds: list[ColumnElement[bool]] = []
    if subject.email is not None:
        # Served by the lower(email) indexes (migration 0002).
        conds.append(func.lower(c.email) == subject.email)
    if subject.phone is not None:
        conds.append(c.phone == subject.phone)
    if subject.user_id is not None:
        conds.append(c.user_id == subject.user_id)
    if subject.session_id is not None:
        conds.append(c.session_id == subject.session_id)
    return or_(*conds)


def subject_session_ids(conn: Connection, subject: Subject, *, lock: bool = False) -> list[str]:
    """Ids of the sessions that belong to this person (their own or their checkouts')."""
    ids: dict[str, None] = {}
    for table in (sessions_t, checkouts_t):
        stmt = select(table.c.session_id).where(_match(table, subject))
        if lock and conn.dialect.name == "postgresql":
            # Keep the server from writing to these sessions until we commit.
            stmt = stmt.with_for_update()
        ids.update(dict.fromkeys(conn.execute(stmt).scalars()))
    if subject.session_id is not None:
        ids.setdefault(subject.session_id, None)
    return list(ids)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _mentions(conn: Connection, column: Column[Any], needles: list[str]) -> ColumnElement[bool]:
    text_value = cast(column, Text)
    conds = []
    for needle in needles:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        if conn.dialect.name == "postgresql":
            conds.append(text_value.ilike(pattern, escape="\\"))
        else:
            # SQLite's LIKE already ignores ASCII case (and lower() would cost a scan).
            conds.append(text_value.like(pattern, escape="\\"))
    return or_(*conds)


def _scrub(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, list):
        return [_scrub(item, pattern) for item in value]
    if isinstance(value, dict):
        return {_scrub(k, pattern): _scrub(v, pattern) for k, v in value.items()}
    return value


def erase_subject(
    conn: Connection,
    subject: Subject,
    *,
    key: bytes,
    now: datetime,
    via: str,
) -> ErasureResult:
    """Delete and scrub everything about ``subject`` in the caller's (write) transaction.

    Adds an ``audit_log`` row with the keyed hash and the counts (no personal
    data). For a dry run, roll the caller's transaction back afterwards.
    """
    result = ErasureResult(subject_hash=subject_hash(key, subject))
    if conn.dialect.name == "sqlite":
        # Freed pages and cells are zeroed, so the file no longer holds the data.
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
    session_ids = subject_session_ids(conn, subject, lock=True)
    result.sessions = len(session_ids)
    # Asked by email, their phone (and vice versa) must go from others' rows too.
    needles = needles_for([subject.email, subject.phone, *_contacts(conn, session_ids)])
    for chunk in _chunks(session_ids):
        for name in TABLES:
            table = _BY_NAME[name]
            outcome = conn.execute(delete(table).where(table.c.session_id.in_(chunk)))
            result.deleted[name] += outcome.rowcount
    # Rows written for them after the lookup (a concurrent insert on PostgreSQL).
    for name, table in (("checkout_sessions", checkouts_t), ("user_sessions", sessions_t)):
        outcome = conn.execute(delete(table).where(_match(table, subject)))
        result.deleted[name] += outcome.rowcount
    if needles:
        pattern = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)
        touched: dict[str, set[int]] = {}
        for table, column_name in _SCRUB_COLUMNS:
            ids = _scrub_column(conn, table, column_name, needles, pattern)
            touched.setdefault(table.name, set()).update(ids)
        for name, changed in touched.items():
            result.scrubbed[name] = len(changed)
    conn.execute(
        insert(audit_t).values(
            action="forget",
            subject_hash=result.subject_hash,
            details={
                "selectors": subject.selectors(),
                "via": via,
                "sessions": result.sessions,
                "deleted": dict(result.deleted),
                "scrubbed": dict(result.scrubbed),
            },
            performed_at=now,
        )
    )
    return result


def _scrub_column(
    conn: Connection,
    table: Table,
    column_name: str,
    needles: list[str],
    pattern: re.Pattern[str],
) -> list[int]:
    """Replace mentions in one column; return the ids of the rows changed."""
    column = table.c[column_name]
    rows = conn.execute(
        select(table.c.id, column).where(_mentions(conn, column, needles))
    ).all()
    updates = []
    for row_id, value in rows:
        cleaned = _scrub(value, pattern)
        if cleaned != value:
            updates.append({"b_id": row_id, "value": cleaned})
    if not updates:
        return []
    stmt = update(table).where(table.c.id == bindparam("b_id")).values(
        {column_name: bindparam("value", type_=column.type)}
    )
    conn.execute(stmt, updates)
    return [u["b_id"] for u in updates]


def checkpoint_sqlite(engine: Engine) -> bool:
    """Fold the WAL into the database file and truncate it, so it keeps no old pages.

    Returns False when readers (e.g. a running server) kept it from completing.
    """
    if engine.dialect.name != "sqlite":
        return True
    # Outside any transaction: the engine's connections always BEGIN first.
    raw = engine.raw_connection()
    try:
        busy, _log, _done = raw.driver_connection.execute(  # type: ignore[union-attr]
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).fetchone()
    finally:
        raw.close()
    return not busy


def vacuum(engine: Engine) -> None:
    """Reclaim deleted rows' space: PostgreSQL VACUUM of the personal-data tables, SQLite VACUUM.

    On PostgreSQL deleted rows stay in the table files as dead tuples until a
    VACUUM marks the space reusable (``VACUUM FULL`` rewrites the files but
    locks the tables); on SQLite it rewrites the file without any free pages.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) " + ", ".join(TABLES))
        return
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
    finally:
        raw.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return wire_time(value)
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)


def collect_subject_data(conn: Connection, subject: Subject) -> dict[str, Any]:
    """Everything stored about one person (GDPR right of access), JSON-ready."""
    session_ids = subject_session_ids(conn, subject)
    needles = needles_for([subject.email, subject.phone, *_contacts(conn, session_ids)])
    own = set(session_ids)
    document: dict[str, Any] = {
        "subject": {name: getattr(subject, name) for name in subject.selectors()}
    }
    for name in ("user_sessions", "page_visits", "checkout_sessions", "payment_errors", "events"):
        table = _BY_NAME[name]
        rows: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(session_ids):
            for row in conn.execute(
                select(table).where(table.c.session_id.in_(chunk)).order_by(table.c.id)
            ).mappings():
                rows[row["id"]] = {k: _jsonable(v) for k, v in row.items()}
        if name in ("user_sessions", "checkout_sessions"):
            for row in conn.execute(select(table).where(_match(table, subject))).mappings():
                rows[row["id"]] = {k: _jsonable(v) for k, v in row.items()}
        document[name] = [rows[key] for key in sorted(rows)]
    mentions: list[dict[str, Any]] = []
    if needles:
        for table, column_name in _SCRUB_COLUMNS:
            column = table.c[column_name]
            for row in conn.execute(
                select(table).where(_mentions(conn, column, needles)).order_by(table.c.id)
            ).mappings():
                if row["session_id"] in own:
                    continue
                mentions.append(
                    {"table": table.name, **{k: _jsonable(v) for k, v in row.items()}}
                )
    document["mentions_elsewhere"] = mentions
    return document
