"""Retention: which finished history is old enough to delete, and deleting it.

``nilemetrics cleanup --purge-older-than`` uses these; they take a Connection
and plain values and return row counts per table name, in the order the tables
are purged (children before the sessions they belong to).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Table, delete, func, select

from nilemetrics.server.db import write_options
from nilemetrics.server.tables import (
    checkouts_t,
    errors_t,
    events_t,
    rollups_t,
    sessions_t,
    visits_t,
)

#: Rows deleted per transaction, so a purge never holds the database for long.
PURGE_CHUNK = 5000

Condition = Callable[[datetime], ColumnElement[bool]]

# What "older than the retention period" means per table. Only finished things go:
# open page visits and live sessions stay, whatever their age.
PURGE_RULES: tuple[tuple[Table, Condition], ...] = (
    (visits_t, lambda cutoff: visits_t.c.is_active.is_(False) & (visits_t.c.entered_at < cutoff)),
    (errors_t, lambda cutoff: errors_t.c.occurred_at < cutoff),
    (
        checkouts_t,
        lambda cutoff: (checkouts_t.c.started_at < cutoff) & (checkouts_t.c.updated_at < cutoff),
    ),
    (events_t, lambda cutoff: events_t.c.occurred_at < cutoff),
    (
        sessions_t,
        lambda cutoff: sessions_t.c.is_active.is_(False) & (sessions_t.c.ended_at < cutoff),
    ),
    # History rollups (minute and hour rows) of buckets that ended before the cutoff.
    (
        rollups_t,
        lambda cutoff: (
            (rollups_t.c.resolution == "minute")
            & (rollups_t.c.bucket_start < cutoff - timedelta(minutes=1))
        ) | (
            (rollups_t.c.resolution == "hour")
            & (rollups_t.c.bucket_start < cutoff - timedelta(hours=1))
        ),
    ),
)


def retention_cutoff(now: datetime, older_than_seconds: float) -> datetime:
    """The time before which finished history goes; ValueError unless the period is positive."""
    if older_than_seconds <= 0:
        raise ValueError("must be longer than zero")
    return now - timedelta(seconds=older_than_seconds)


def purgeable(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """How many rows per table a purge at ``cutoff`` would delete (a dry run; no writes)."""
    counts: dict[str, int] = {}
    for table, rule in PURGE_RULES:
        counts[table.name] = int(
            conn.execute(select(func.count()).select_from(table).where(rule(cutoff))).scalar_one()
        )
    return counts


def purge(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """Delete finished history older than ``cutoff``; rows deleted per table.

    Each chunk of at most ``PURGE_CHUNK`` rows is its own short write transaction,
    so ingestion next to a purge waits for a chunk, never for the whole purge; the
    connection must therefore not be in a transaction already. On PostgreSQL a
    concurrent purge takes other rows instead of waiting for these.
    """
    if conn.in_transaction():
        raise RuntimeError("purge commits chunk by chunk: pass a connection outside a transaction")
    return {table.name: _purge_table(conn, table, rule(cutoff)) for table, rule in PURGE_RULES}


def _purge_table(conn: Connection, table: Table, condition: ColumnElement[bool]) -> int:
    chunk = PURGE_CHUNK  # read at call time: tests shrink it
    total = 0
    while True:
        ids = select(table.c.id).where(condition).limit(chunk)
        if conn.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        write_options(conn)
        with conn.begin():
            deleted = conn.execute(
                delete(table).where(table.c.id.in_(ids.scalar_subquery()))
            ).rowcount
        total += deleted
        if deleted < chunk:
            return total
