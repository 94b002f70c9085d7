"""Durable delivery of queued notifications: claimed once, retried with backoff, marked sent.

Rows are delivered oldest first per notifier URL: a URL's next notification waits
until the one before it is sent, so a receiver never gets "resolved" before
"firing". A failed send is retried after ``base * 2^(attempts-1)`` seconds, at
most :data:`MAX_BACKOFF`; a notification is never given up on while its notifier
exists.

PostgreSQL (several processes): the row is claimed with ``SELECT ... FOR UPDATE
SKIP LOCKED`` and stays locked while it is sent; it is marked sent in that same
transaction, right after the service accepted it. No other process can send it
meanwhile. SQLite (one process): one delivery loop, so a plain read is the claim.

What this guarantees: a notification is never lost (it is in the database before
its state change is committed) and never sent twice, except in one window: a
crash (or lost database connection) after the service accepted it and before the
commit that marks it sent. Then it is sent once more. Apprise has no idempotency
keys to close that window; each message names its rule and episode, so a reader
can tell a repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import OperationalError

from nilemetrics.server.alerts.delivery import Sender
from nilemetrics.server.alerts.messages import Message, contacts_section
from nilemetrics.server.alerts.rules import AlertsConfig
from nilemetrics.server.alerts.values import contacts_of_errors
from nilemetrics.server.db import write_options
from nilemetrics.server.tables import alert_outbox_t

log = logging.getLogger(__name__)

#: Longest wait between two attempts of one notification.
MAX_BACKOFF = 300.0

#: Tries to record a notification as sent (SQLite: each waits for the busy timeout).
_MARK_TRIES = 3


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one claimed notification."""

    outbox_id: int
    rule: str
    kind: str
    notifier: str
    status: str  # sent, retry, dropped
    attempts: int
    error: str | None = None
    retry_in: float | None = None


def backoff(attempts: int, base: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return float(min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF))


def _due(conn: Connection, now: datetime) -> Any:
    """The next due notification whose URL has nothing older pending, or None."""
    o = alert_outbox_t.c
    # Aliased, so that it is not correlated with the outer query's table.
    h = alert_outbox_t.alias("heads").c
    heads = (
        select(func.min(h.id))
        .where(h.status == "pending")
        .group_by(h.notifier, h.target)
    )
    stmt = (
        select(alert_outbox_t)
        .where((o.status == "pending") & (o.next_attempt_at <= now) & o.id.in_(heads))
        .order_by(o.next_attempt_at, o.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        # Another process sending the head of a URL's queue holds its lock: skip it.
        stmt = stmt.with_for_update(skip_locked=True, of=alert_outbox_t)
    return conn.execute(stmt).first()


def _prepare(conn: Connection, row: Any, config: AlertsConfig) -> tuple[str | None, Message]:
    """The URL and final text of a claimed row (contacts looked up now, if asked)."""
    notifier = config.notifiers.get(row.notifier)
    url = notifier.urls[row.target] if notifier and row.target < len(notifier.urls) else None
    body = row.body
    if row.contact_error_ids is not None:
        body += "\n" + contacts_section(contacts_of_errors(conn, list(row.contact_error_ids)))
    return url, Message(title=row.title, body=body, notify_type=row.notify_type)


def _mark(conn: Connection, row: Any, error: str | None, url: str | None, now: datetime,
          base: float, config: AlertsConfig) -> Delivery:
    o = alert_outbox_t.c
    attempts = row.attempts + 1
    where = (o.id == row.id) & (o.status == "pending")
    common = {"rule": row.rule, "kind": row.kind, "notifier": row.notifier}
    if url is None:
        reason = f'notifier "{row.notifier}" is not in {config.path} any more'
        conn.execute(update(alert_outbox_t).where(where)
                     .values(status="dropped", last_error=reason[:1024]))
        return Delivery(row.id, status="dropped", attempts=row.attempts, error=reason, **common)
    if error is None:
        conn.execute(update(alert_outbox_t).where(where)
                     .values(status="sent", sent_at=now, attempts=attempts, last_error=None))
        return Delivery(row.id, status="sent", attempts=attempts, **common)
    wait = backoff(attempts, base)
    conn.execute(
        update(alert_outbox_t).where(where).values(
            attempts=attempts, last_error=error[:1024],
            next_attempt_at=now + timedelta(seconds=wait),
        )
    )
    return Delivery(row.id, status="retry", attempts=attempts, error=error, retry_in=wait,
                    **common)


def deliver_next(
    engine: Engine,
    config: AlertsConfig,
    now: Callable[[], datetime],
    send: Sender,
    base: float,
) -> Delivery | None:
    """Claim, send and mark the next due notification; None when none is due (blocking)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, conn.begin():
            row = _due(conn, now())
            if row is None:
                return None
            url, message = _prepare(conn, row, config)
            error = send(url, message) if url is not None else None
            return _mark(conn, row, error, url, now(), base, config)
    with engine.connect() as conn, conn.begin():
        row = _due(conn, now())
        if row is None:
            return None
        url, message = _prepare(conn, row, config)
    error = send(url, message) if url is not None else None
    # Sent but not yet marked: this is the window in which a failure means sending it
    # again, so a busy database (another process's lock) gets a few more tries.
    for attempt in range(_MARK_TRIES):
        try:
            with engine.connect() as conn:
                write_options(conn)
                with conn.begin():
                    return _mark(conn, row, error, url, now(), base, config)
        except OperationalError:
            if attempt == _MARK_TRIES - 1:
                raise
            log.warning("could not mark alert notification #%d yet; trying again", row.id)
    raise AssertionError("unreachable")


def pending_count(conn: Connection) -> int:
    """Notifications not sent yet (all rules, all processes)."""
    o = alert_outbox_t.c
    count: int = conn.execute(
        select(func.count()).select_from(alert_outbox_t).where(o.status == "pending")
    ).scalar_one()
    return count


def pending_rows(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The pending notifications, oldest first, with their attempts and last error."""
    o = alert_outbox_t.c
    rows = conn.execute(
        select(o.id, o.rule, o.kind, o.notifier, o.attempts, o.last_error, o.created_at,
               o.next_attempt_at)
        .where(o.status == "pending")
        .order_by(o.id)
        .limit(limit)
    ).all()
    return [dict(row._mapping) for row in rows]
