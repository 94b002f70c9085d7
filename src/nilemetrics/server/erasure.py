"""GDPR erasure and access: find everything stored about one person, remove or collect it.

The one implementation behind ``nilemetrics forget``, ``nilemetrics export
--email`` and ``DELETE /api/metrics/subjects``. A person is named by email,
phone, user id and/or session id. Their sessions are those whose session or
checkout rows carry one of these, compared as whole values (email in any case),
and then, in turn, those carrying an identifier found in their sessions (the
phone stored with the checkout of a session found by email, say): see
:func:`find_subject`. Every row of those sessions is deleted. In anyone else's
rows, a JSON string or a text column whose *whole* value is the email or phone
asked for is replaced by ``[erased]``; nothing is matched inside longer text,
so other people's data is never rewritten for sharing a few characters with
the selector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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
    false,
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


def _json_forms(value: str) -> list[str]:
    """How ``value`` may appear in stored JSON text (for a prefilter in SQL)."""
    forms = [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    return list(dict.fromkeys(forms))


#: Identifiers that shops store for "unknown" and that would link strangers together.
_PLACEHOLDERS = frozenset(
    {"0", "-", "-1", "n/a", "na", "none", "null", "undefined", "unknown", "guest"}
)


def _distinctive(kind: str, value: str) -> bool:
    """Whether an identifier found in a person's rows may name them elsewhere too.

    A phone stored as "0" or a user id "guest" is no one in particular: following
    it would erase strangers who happen to carry the same placeholder.
    """
    if value.strip().lower() in _PLACEHOLDERS:
        return False
    if kind == "email":
        local, at, domain = value.partition("@")
        return bool(at and local.strip() and domain.strip())
    if kind == "phone":
        return sum(ch.isdigit() for ch in value) >= 6
    return bool(value.strip())


@dataclass
class FoundSubject:
    """A person's sessions and every identifier their rows carry."""

    session_ids: list[str]
    emails: set[str]
    phones: set[str]
    user_ids: set[str]


#: Rounds of "identifiers -> sessions -> more identifiers" before we stop looking.
_MAX_ROUNDS = 10


def find_subject(conn: Connection, subject: Subject, *, lock: bool = False) -> FoundSubject:
    """The person's sessions: found by the selectors, then by what those sessions carry.

    Someone found by email in one session may have their phone stored in another
    session that only their user id links; both sessions are theirs. Identifiers
    are always compared whole (emails in any case); those found along the way
    are followed only when :func:`_distinctive`.
    """
    found = FoundSubject(
        session_ids=[],
        emails={subject.email} if subject.email is not None else set(),
        phones={subject.phone} if subject.phone is not None else set(),
        user_ids={subject.user_id} if subject.user_id is not None else set(),
    )
    ids: dict[str, None] = {}
    if subject.session_id is not None:
        ids[subject.session_id] = None
    for _round in range(_MAX_ROUNDS):
        size = (len(ids), len(found.emails), len(found.phones), len(found.user_ids))
        for table in (sessions_t, checkouts_t):
            stmt = select(table.c.session_id).where(_match(table, found))
            if lock and conn.dialect.name == "postgresql":
                # Keep the server from writing to these sessions until we commit.
                stmt = stmt.with_for_update()
            ids.update(dict.fromkeys(conn.execute(stmt).scalars()))
        for chunk in _chunks(list(ids)):
            for table in (sessions_t, checkouts_t):
                c = table.c
                for email, phone, user_id in conn.execute(
                    select(c.email, c.phone, c.user_id).where(c.session_id.in_(chunk))
                ):
                    if email and _distinctive("email", email):
                        found.emails.add(email.strip().lower())
                    if phone and _distinctive("phone", phone):
                        found.phones.add(phone)
                    if user_id and _distinctive("user_id", user_id):
                        found.user_ids.add(user_id)
        if size == (len(ids), len(found.emails), len(found.phones), len(found.user_ids)):
            break
    found.session_ids = list(ids)
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


def _match(table: Table, found: FoundSubject) -> ColumnElement[bool]:
    c = table.c
    conds: list[ColumnElement[bool]] = []
    # The IN lists stay short: a person has a handful of identifiers.
    if found.emails:
        # Served by the lower(email) indexes (migration 0002).
        conds.append(func.lower(c.email).in_(sorted(found.emails)))
    if found.phones:
        conds.append(c.phone.in_(sorted(found.phones)))
    if found.user_ids:
        conds.append(c.user_id.in_(sorted(found.user_ids)))
    return or_(*conds) if conds else false()


def subject_session_ids(conn: Connection, subject: Subject, *, lock: bool = False) -> list[str]:
    """Ids of the sessions that belong to this person (see :func:`find_subject`)."""
    return find_subject(conn, subject, lock=lock).session_ids


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


@dataclass(frozen=True)
class _Selectors:
    """The email and phone asked for, as matched against other people's rows."""

    email: str | None
    phone: str | None

    def forms(self) -> list[str]:
        """Texts to look for in SQL: a cheap prefilter, checked exactly in Python."""
        return [
            form for value in (self.email, self.phone) if value for form in _json_forms(value)
        ]

    def equals(self, value: str) -> bool:
        """Whether ``value`` is, as a whole, the email (any case) or the phone."""
        return (self.email is not None and value.strip().lower() == self.email) or (
            self.phone is not None and value.strip() == self.phone
        )


def _mentions(conn: Connection, column: Column[Any], forms: list[str]) -> ColumnElement[bool]:
    text_value = cast(column, Text)
    conds = []
    for form in forms:
        escaped = form.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        if conn.dialect.name == "postgresql":
            conds.append(text_value.ilike(pattern, escape="\\"))
        else:
            # SQLite's LIKE already ignores ASCII case (and lower() would cost a scan).
            conds.append(text_value.like(pattern, escape="\\"))
    return or_(*conds)


def _scrub(value: Any, selectors: _Selectors) -> Any:
    """``value`` with every string that *is* the email or phone replaced, nothing else."""
    if isinstance(value, str):
        return REDACTED if selectors.equals(value) else value
    if isinstance(value, list):
        return [_scrub(item, selectors) for item in value]
    if isinstance(value, dict):
        return {_scrub(k, selectors): _scrub(v, selectors) for k, v in value.items()}
    return value


def _mentioned(value: Any, selectors: _Selectors) -> bool:
    return bool(_scrub(value, selectors) != value)


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
    found = find_subject(conn, subject, lock=True)
    session_ids = found.session_ids
    result.sessions = len(session_ids)
    for chunk in _chunks(session_ids):
        for name in TABLES:
            table = _BY_NAME[name]
            outcome = conn.execute(delete(table).where(table.c.session_id.in_(chunk)))
            result.deleted[name] += outcome.rowcount
    # Rows written for them after the lookup (a concurrent insert on PostgreSQL).
    for name, table in (("checkout_sessions", checkouts_t), ("user_sessions", sessions_t)):
        outcome = conn.execute(delete(table).where(_match(table, found)))
        result.deleted[name] += outcome.rowcount
    # Other people's rows: only what was asked for, and only whole values. Identifiers
    # found in the person's own sessions (a phone "0", say) are not looked for there.
    selectors = _Selectors(subject.email, subject.phone)
    if selectors.forms():
        touched: dict[str, set[int]] = {}
        for table, column_name in _SCRUB_COLUMNS:
            ids = _scrub_column(conn, table, column_name, selectors)
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
    conn: Connection, table: Table, column_name: str, selectors: _Selectors
) -> list[int]:
    """Replace whole-value mentions in one column; return the ids of the rows changed."""
    column = table.c[column_name]
    rows = conn.execute(
        select(table.c.id, column).where(_mentions(conn, column, selectors.forms()))
    ).all()
    updates = []
    for row_id, value in rows:
        cleaned = _scrub(value, selectors)
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
    found = find_subject(conn, subject)
    session_ids = found.session_ids
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
        document[name] = [rows[key] for key in sorted(rows)]
    # Other people's rows that an erasure would scrub: the same whole-value rule.
    selectors = _Selectors(subject.email, subject.phone)
    mentions: list[dict[str, Any]] = []
    if selectors.forms():
        for table, column_name in _SCRUB_COLUMNS:
            column = table.c[column_name]
            for row in conn.execute(
                select(table).where(_mentions(conn, column, selectors.forms()))
                .order_by(table.c.id)
            ).mappings():
                if row["session_id"] in own or not _mentioned(row[column_name], selectors):
                    continue
                mentions.append(
                    {"table": table.name, **{k: _jsonable(v) for k, v in row.items()}}
                )
    document["mentions_elsewhere"] = mentions
    return document
