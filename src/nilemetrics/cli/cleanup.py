"""`nilemetrics cleanup`: end idle sessions and purge history past the retention period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table as RichTable
from sqlalchemy import ColumnElement, Connection, Engine, Table, delete, func, select

from nilemetrics.cli.options import (
    DatabaseUrlOption,
    database_errors,
    fail,
    open_database,
    out_console,
    seconds,
    utc_now,
)
from nilemetrics.durations import format_duration
from nilemetrics.server.cleanup import end_stale_sessions, stale_session_count
from nilemetrics.server.db import write_options
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t

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
)


def _write(engine: Engine, job: Callable[[Connection], int]) -> int:
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            return job(conn)


def end_sessions(engine: Engine, now: datetime, timeout: float) -> tuple[int, int]:
    """End sessions idle past ``timeout`` in one write transaction (the server's own code)."""
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            return end_stale_sessions(conn, now, timeout)


def purge_table(engine: Engine, table: Table, condition: ColumnElement[bool]) -> int:
    """Delete matching rows in chunks, one short transaction each; return how many."""

    def chunk(conn: Connection) -> int:
        ids = select(table.c.id).where(condition).limit(PURGE_CHUNK)
        if conn.dialect.name == "postgresql":
            # A concurrent cleanup takes other rows instead of waiting for these.
            ids = ids.with_for_update(skip_locked=True)
        return conn.execute(delete(table).where(table.c.id.in_(ids.scalar_subquery()))).rowcount

    total = 0
    while True:
        deleted = _write(engine, chunk)
        total += deleted
        if deleted < PURGE_CHUNK:
            return total


def count_rows(engine: Engine, table: Table, condition: ColumnElement[bool]) -> int:
    """How many rows match (for ``--dry-run``)."""
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
        )


def cleanup(
    session_timeout: Annotated[
        str | None,
        typer.Option(help="End sessions idle this long (default: the server's setting, 30m).",
                     show_default=False),
    ] = None,
    purge_older_than: Annotated[
        str | None,
        typer.Option(help="Also delete finished history older than this, e.g. 90d.",
                     show_default=False),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would change.")
    ] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """End idle sessions and purge old history; prints what changed per table.

    Safe from cron, next to a running server and next to another cleanup.

    Example: nilemetrics cleanup --session-timeout 30m --purge-older-than 90d
    """
    timeout = seconds(session_timeout, "--session-timeout") if session_timeout else None
    retention = seconds(purge_older_than, "--purge-older-than") if purge_older_than else None
    if retention is not None and retention <= 0:
        fail("--purge-older-than: must be longer than zero")
    engine, settings = open_database(database_url)
    if timeout is None:
        timeout = settings.session_timeout
    now = utc_now()
    report = RichTable(title="nilemetrics cleanup" + (" (dry run)" if dry_run else ""))
    report.add_column("table")
    report.add_column("change")
    report.add_column("rows", justify="right")
    with database_errors(engine):
        if dry_run:
            with engine.connect() as conn:
                ended = stale_session_count(conn, now, timeout)
            report.add_row("user_sessions", f"would end (idle > {format_duration(timeout)})",
                           str(ended))
        else:
            ended, closed = end_sessions(engine, now, timeout)
            report.add_row("user_sessions", f"ended (idle > {format_duration(timeout)})",
                           str(ended))
            report.add_row("page_visits", "closed", str(closed))
        if retention is not None:
            cutoff = now - timedelta(seconds=retention)
            label = ("would delete" if dry_run else "deleted") + (
                f" (older than {format_duration(retention)})"
            )
            for table, rule in PURGE_RULES:
                condition = rule(cutoff)
                count = (
                    count_rows(engine, table, condition)
                    if dry_run
                    else purge_table(engine, table, condition)
                )
                report.add_row(table.name, label, str(count))
    out_console.print(report)
