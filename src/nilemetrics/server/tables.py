"""SQLModel tables; names follow the shop's existing schema (DESIGN.md "Data model").

The hot ingestion path uses these tables through SQLAlchemy Core
(``Model.__table__``) so a batch of events costs a handful of statements.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    column,
    func,
    select,
    text,
)
from sqlmodel import Field, SQLModel

from nilemetrics.server.column_types import JSONType, Money, UTCDateTime

# Ids are BIGINT on PostgreSQL (history grows without bound) and INTEGER on SQLite,
# where only "INTEGER PRIMARY KEY" is the rowid alias that autoincrements.
IdType = BigInteger().with_variant(Integer(), "sqlite")


def _id() -> Any:
    return Field(default=None, sa_column=Column(IdType, primary_key=True, autoincrement=True))


def _utc(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class UserSession(SQLModel, table=True):
    """One visitor session (a browser tab); its current page makes live counts cheap."""

    __tablename__ = "user_sessions"
    __table_args__ = (
        # Live counts scan only active sessions, newest activity first. Queries must spell
        # the condition the same way (``is_active == true()``) for SQLite to use it.
        # SQLite only: on PostgreSQL an index on the columns every event changes made
        # each session update a non-HOT one, rewriting all eight indexes (migration 0003).
        Index(
            "ix_user_sessions_live",
            "last_activity",
            "current_page_type",
            "current_page_identifier",
            sqlite_where=text("is_active = 1"),
        ).ddl_if(dialect="sqlite"),
        # PostgreSQL: the active sessions by a column no event changes, so the per-event
        # update stays HOT (with the table's fillfactor of 70, set by migration 0003).
        Index(
            "ix_user_sessions_active",
            "session_id",
            postgresql_where=text("is_active = true"),
        ).ddl_if(dialect="postgresql"),
        # GDPR erasure and access look people up by email whatever its case.
        Index("ix_user_sessions_email_lower", func.lower(column("email"))),
        # History rollups count the sessions started per minute; set once, never
        # updated (so PostgreSQL's per-event update stays HOT).
        Index("ix_user_sessions_started_at", "started_at"),
    )

    id: int | None = _id()
    session_id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    user_id: str | None = Field(default=None, max_length=255, index=True)
    email: str | None = Field(default=None, max_length=320, index=True)
    phone: str | None = Field(default=None, max_length=64, index=True)
    ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=1024)
    is_active: bool = True
    started_at: datetime = _utc(nullable=False)
    last_activity: datetime = _utc(nullable=False)
    # Grows only at its end (sessions end in time order), so it costs ingestion
    # almost nothing; reports and purges find ended sessions by it.
    ended_at: datetime | None = _utc(index=True)
    current_page_type: str | None = Field(default=None, max_length=64)
    current_page_identifier: str | None = Field(default=None, max_length=255)
    #: web, ios, android or other, as ``session/start`` said; null: not said (counted as web).
    platform: str | None = Field(default=None, max_length=16)
    app_version: str | None = Field(default=None, max_length=64)


class PageVisit(SQLModel, table=True):
    """One stay on one page; the open one (``is_active``) is closed by the next event."""

    __tablename__ = "page_visits"
    __table_args__ = (
        # A session's visits in order: its history (journeys, erasure, export) and its
        # open visit, which is always its latest (one seek).
        Index("ix_page_visits_session", "session_id", "id"),
        # Visits per type over a period (reports, rollups, alerts) by range scans.
        # PostgreSQL: no index names ``exited_at``, ``duration_seconds`` or
        # ``is_active``, the columns closing a visit sets, so the close is a HOT update
        # (no index entries; fillfactor 70 leaves room, migration 0008); the report
        # reads durations from the rows.
        Index(
            "ix_page_visits_type_time", "page_type", "entered_at", "page_identifier",
        ).ddl_if(dialect="postgresql"),
        # SQLite: covering, with the duration (the time-on-page report over a day of a
        # million visits from the index alone: 0.8 s, against 1.7 s reading the rows).
        # SQLite rewrites only the indexes whose columns change: a close rewrites this
        # one entry.
        Index(
            "ix_page_visits_type_time", "page_type", "entered_at", "page_identifier",
            "duration_seconds",
        ).ddl_if(dialect="sqlite"),
    )

    id: int | None = _id()
    session_id: str = Field(max_length=36)
    page_type: str = Field(max_length=64)
    page_identifier: str | None = Field(default=None, max_length=255)
    page_url: str | None = Field(default=None, max_length=2048)
    entered_at: datetime = _utc(nullable=False)
    exited_at: datetime | None = _utc()
    duration_seconds: float | None = None
    is_active: bool = True


class CheckoutSession(SQLModel, table=True):
    """One checkout: its basket, amount and where its payment got to."""

    __tablename__ = "checkout_sessions"
    __table_args__ = (
        # GDPR erasure and access look people up by email whatever its case.
        Index("ix_checkout_sessions_email_lower", func.lower(column("email"))),
    )

    id: int | None = _id()
    session_id: str = Field(max_length=36, index=True)
    user_id: str | None = Field(default=None, max_length=255, index=True)
    email: str | None = Field(default=None, max_length=320, index=True)
    phone: str | None = Field(default=None, max_length=64, index=True)
    checkout_items: list[Any] = Field(default_factory=list, sa_column=Column(JSONType()))
    # Known even when the items are not: a payment event may carry only their count.
    item_count: int | None = None
    total_amount: Decimal | None = Field(default=None, sa_column=Column(Money()))
    payment_method: str | None = Field(default=None, max_length=255)
    status: str = Field(default="in_progress", max_length=20, index=True)
    error_count: int = 0
    started_at: datetime = _utc(nullable=False, index=True)
    payment_started_at: datetime | None = _utc()
    payment_error_at: datetime | None = _utc(index=True)
    completed_at: datetime | None = _utc(index=True)
    updated_at: datetime = _utc(nullable=False)


class PaymentError(SQLModel, table=True):
    """One failed payment attempt; a retry adds a row, never overwrites one."""

    __tablename__ = "payment_errors"

    id: int | None = _id()
    checkout_id: int | None = Field(default=None, sa_column=Column(IdType, index=True))
    session_id: str = Field(max_length=36, index=True)
    attempt: int = 1
    error_code: str | None = Field(default=None, max_length=255, index=True)
    error_message: str | None = Field(default=None, max_length=2048)
    error_details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType()))
    amount: Decimal | None = Field(default=None, sa_column=Column(Money()))
    payment_method: str | None = Field(default=None, max_length=255)
    page_url: str | None = Field(default=None, max_length=2048)
    ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=1024)
    occurred_at: datetime = _utc(nullable=False, index=True)


class LiveMetric(SQLModel, table=True):
    """Latest live count per (metric_type, metric_identifier), for other tools to read."""

    __tablename__ = "live_metrics"
    __table_args__ = (UniqueConstraint("metric_type", "metric_identifier"),)

    id: int | None = _id()
    metric_type: str = Field(max_length=32)
    metric_identifier: str = Field(default="", max_length=255)
    active_users_count: int = 0
    last_updated: datetime = _utc(nullable=False)


class Event(SQLModel, table=True):
    """Append-only log of every accepted event; ``event_id`` makes retries idempotent."""

    __tablename__ = "events"
    __table_args__ = (
        # Custom events by name and time (reports, experiments) and by time alone (the
        # live counts of the last minutes). Partial: the other events, nearly all the
        # log, cost these indexes nothing (migration 0007).
        Index(
            "ix_events_name",
            "name",
            "occurred_at",
            sqlite_where=text("name IS NOT NULL"),
            postgresql_where=text("name IS NOT NULL"),
        ),
        Index(
            "ix_events_named_time",
            "occurred_at",
            "name",
            sqlite_where=text("name IS NOT NULL"),
            postgresql_where=text("name IS NOT NULL"),
        ),
    )

    id: int | None = _id()
    event_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    event_type: str = Field(max_length=32)
    #: A custom event's name (``track/event``); null for the other types.
    name: str | None = Field(default=None, max_length=64)
    session_id: str | None = Field(default=None, max_length=36, index=True)
    occurred_at: datetime = _utc(nullable=False, index=True)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType()))


class AuditLog(SQLModel, table=True):
    """Operations that touched personal data, recorded without the data itself."""

    __tablename__ = "audit_log"

    id: int | None = _id()
    action: str = Field(max_length=32)
    subject_hash: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType()))
    performed_at: datetime = _utc(nullable=False)


class AlertState(SQLModel, table=True):
    """Where each alert rule stands (ok, pending, firing) and since when; one row per rule.

    Shared by every `serve` process on the database: one of them evaluates per tick.
    """

    __tablename__ = "alert_state"

    id: int | None = _id()
    rule: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    metric: str = Field(max_length=300)
    direction: str = Field(max_length=8)
    threshold: float
    window_seconds: float | None = None
    state: str = Field(max_length=16)
    since: datetime = _utc(nullable=False)
    pending_since: datetime | None = _utc()
    value: float | None = None
    episode: int = 0
    last_notified_at: datetime | None = _utc()
    evaluated_at: datetime = _utc(nullable=False)


class AlertOutbox(SQLModel, table=True):
    """One notification to one notifier URL, written with the state change that caused it.

    ``status``: pending until sent (or dropped when its notifier is gone); retried with
    backoff meanwhile. Contact data is never stored here: ``contact_error_ids`` name the
    payment errors whose contacts are looked up when sending (an erased person's are gone).
    """

    __tablename__ = "alert_outbox"
    __table_args__ = (
        # The delivery loop looks only at pending rows, oldest first per notifier URL.
        Index(
            "ix_alert_outbox_pending",
            "notifier",
            "target",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: int | None = _id()
    dedupe_key: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    rule: str = Field(max_length=255)
    kind: str = Field(max_length=16)
    episode: int
    notifier: str = Field(max_length=255)
    target: int = 0
    title: str = Field(max_length=512)
    body: str = Field(max_length=8192)
    notify_type: str = Field(max_length=16)
    contact_error_ids: list[Any] | None = Field(default=None, sa_column=Column(JSONType()))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1024)
    created_at: datetime = _utc(nullable=False)
    next_attempt_at: datetime = _utc(nullable=False)
    sent_at: datetime | None = _utc()


class MetricRollup(SQLModel, table=True):
    """What happened in one minute (or hour) of history; counts only, no personal data.

    ``resolution`` is ``minute`` or ``hour``. A minute row is created by the live
    sample at the start of its minute (``live``: the live-metrics body then, for
    replay) and gets its counts once the minute is over (``complete``). Hour rows
    are folded from an hour's minute rows; minute rows go after 14 days.
    """

    __tablename__ = "metric_rollups"
    __table_args__ = (UniqueConstraint("resolution", "bucket_start"),)

    id: int | None = _id()
    resolution: str = Field(max_length=8)
    bucket_start: datetime = _utc(nullable=False)
    complete: bool = False
    live_sessions: int | None = None
    pages: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType()))
    sessions_started: int = 0
    page_visits: int = 0
    checkouts_started: int = 0
    payment_errors: int = 0
    payment_errors_by_code: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONType())
    )
    payment_successes: int = 0
    amount_paid: Decimal | None = Field(default=None, sa_column=Column(Money()))
    amount_failed: Decimal | None = Field(default=None, sa_column=Column(Money()))
    live: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType()))


def table(model: type[SQLModel]) -> Table:
    """The Core table behind a model, typed for mypy."""
    result = model.__table__  # type: ignore[attr-defined]
    if not isinstance(result, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return result


sessions_t = table(UserSession)
visits_t = table(PageVisit)
checkouts_t = table(CheckoutSession)
errors_t = table(PaymentError)
live_metrics_t = table(LiveMetric)
events_t = table(Event)
audit_t = table(AuditLog)
alert_state_t = table(AlertState)
alert_outbox_t = table(AlertOutbox)
rollups_t = table(MetricRollup)
metadata = SQLModel.metadata


def latest_visit(session_id: Any, *columns: str) -> Any:
    """``columns`` of a session's latest page visit, which is its open one if it is open.

    Visits are appended in time order and each closes the one before, so a session
    has at most one open visit, its latest: one seek on ``ix_page_visits_session``
    finds it, never a walk through the session's history. Ordered by both of that
    index's columns, so that only that index gives the order (``max(id)`` could also
    be answered by walking the primary key backwards until the session turns up).
    ``session_id``: a value or a column of an enclosing query (correlated). A one-row
    select; on PostgreSQL, join it as a LATERAL probe, not on its result (see
    ``statements``: such a join was planned as a hash of all open visits).
    """
    latest = visits_t.alias("latest").c
    return (
        select(*(latest[name] for name in columns))
        .where(latest.session_id == session_id)
        .order_by(latest.session_id.desc(), latest.id.desc())
        .limit(1)
    )


def latest_visit_id(session_id: Any) -> Any:
    """The id of a session's latest page visit, as a scalar subquery (see latest_visit)."""
    return latest_visit(session_id, "id").scalar_subquery()
