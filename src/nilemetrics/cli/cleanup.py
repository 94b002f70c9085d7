"""`nilemetrics cleanup`: end idle sessions and purge history past the retention period."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table as RichTable
from sqlalchemy import Engine

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
from nilemetrics.server.db import write_options
from nilemetrics.server.retention import purge, purgeable, retention_cutoff
from nilemetrics.server.services.cleanup import end_stale_sessions, stale_session_count


def end_sessions(engine: Engine, now: datetime, timeout: float) -> tuple[int, int]:
    """End sessions idle past ``timeout`` in one write transaction (the server's own code)."""
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            return end_stale_sessions(conn, now, timeout)


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
    now = utc_now()
    cutoff = None
    if retention is not None:
        try:
            cutoff = retention_cutoff(now, retention)
        except ValueError as exc:
            fail(f"--purge-older-than: {exc}")
    engine, settings = open_database(database_url)
    if timeout is None:
        timeout = settings.session_timeout
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
        if retention is not None and cutoff is not None:
            label = ("would delete" if dry_run else "deleted") + (
                f" (older than {format_duration(retention)})"
            )
            with engine.connect() as conn:
                counts = purgeable(conn, cutoff) if dry_run else purge(conn, cutoff)
            for table, count in counts.items():
                report.add_row(table, label, str(count))
    out_console.print(report)
