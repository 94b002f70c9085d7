"""`nilemetrics forget`: the GDPR right to erasure, from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table as RichTable
from sqlalchemy import Engine, text

from nilemetrics.cli.options import (
    DatabaseUrlOption,
    database_errors,
    err_console,
    fail,
    open_database,
    out_console,
    utc_now,
)
from nilemetrics.server.db import write_options
from nilemetrics.server.erasure import (
    TABLES,
    ErasureResult,
    Subject,
    SubjectError,
    checkpoint_sqlite,
    ensure_erasure_key,
    erase_subject,
    vacuum,
)


def _erase(engine: Engine, subject: Subject, key: bytes, *, commit: bool) -> ErasureResult:
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin() as tx:
            result = erase_subject(conn, subject, key=key, now=utc_now(), via="cli")
            if not commit:
                tx.rollback()
            elif conn.dialect.name == "postgresql":
                from nilemetrics.server.notify import NOTIFY_CHANNEL

                # Running servers refresh their live numbers and error lists at commit.
                conn.execute(
                    text("SELECT pg_notify(:c, 'errors')"), {"c": NOTIFY_CHANNEL}
                )
    return result


def _table(result: ErasureResult, title: str) -> RichTable:
    table = RichTable(title=title)
    table.add_column("table")
    table.add_column("rows deleted", justify="right")
    table.add_column("rows scrubbed", justify="right")
    for name in TABLES:
        table.add_row(name, str(result.deleted[name]), str(result.scrubbed[name]))
    table.add_row(
        "[bold]total[/]",
        f"[bold]{sum(result.deleted.values())}[/]",
        f"[bold]{sum(result.scrubbed.values())}[/]",
    )
    return table


def _confirm() -> None:
    try:
        confirmed = typer.confirm("Erase these rows for good?", default=False, err=True)
    except typer.Abort:
        err_console.print()  # end the prompt's line
        if not sys.stdin.isatty():
            # Run from cron or a pipe: there is nobody to answer.
            fail("no terminal to confirm on, nothing was erased: pass --yes to erase "
                 "without asking (or --dry-run to see what would go)")
        fail("aborted: nothing was erased")
    if not confirmed:
        fail("aborted: nothing was erased")


def forget(
    email: Annotated[str | None, typer.Option(help="The person's email (any case).")] = None,
    phone: Annotated[str | None, typer.Option(help="The person's phone, as stored.")] = None,
    user_id: Annotated[str | None, typer.Option(help="The shop's user id.")] = None,
    session_id: Annotated[str | None, typer.Option(help="One session id.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be erased.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    do_vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Afterwards VACUUM (PostgreSQL: the tables, so dead rows' space is reclaimed; "
            "SQLite: rewrite the file).",
        ),
    ] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Erase every trace of one person (GDPR right to erasure), in one transaction.

    Deletes their sessions (all sessions their email, phone or user id link),
    page visits, checkouts, payment errors and event-log entries; in anyone
    else's rows, replaces JSON strings that are exactly the email/phone given
    (never parts of longer text); and records an audit entry (keyed hash and
    counts, no personal data).
    SQLite: deleted bytes are zeroed and the WAL truncated. PostgreSQL keeps dead
    rows in its files until VACUUM: pass --vacuum (or run VACUUM FULL off-hours).

    Example: nilemetrics forget --email jane@example.com --dry-run
    """
    try:
        subject = Subject(email=email, phone=phone, user_id=user_id, session_id=session_id)
    except SubjectError as exc:
        fail(str(exc))
    engine, settings = open_database(database_url)
    key = ensure_erasure_key(settings.config_dir)
    with database_errors(engine):
        if dry_run or not yes:
            # The preview is the real erasure, rolled back: its counts are exact.
            preview = _erase(engine, subject, key, commit=False)
            if dry_run:
                out_console.print(_table(preview, "forget (dry run): would erase"))
                out_console.print(f"{preview.sessions} session(s) found; nothing was changed.")
                return
            if preview.total:
                out_console.print(_table(preview, "forget: will erase"))
                _confirm()
        result = _erase(engine, subject, key, commit=True)
        out_console.print(_table(result, "forget: erased"))
        # Counted from the rows deleted: a --session-id nobody has is no session erased.
        sessions = result.deleted["user_sessions"]
        if result.total:
            out_console.print(
                f"{sessions} session(s) erased; audit entry {result.subject_hash}",
                soft_wrap=True,
            )
        else:
            out_console.print(
                f"nothing found: 0 session(s) erased, no rows changed; audit entry "
                f"{result.subject_hash}",
                soft_wrap=True,
            )
        if engine.dialect.name == "sqlite" and not checkpoint_sqlite(engine):
            err_console.print(
                "warning: readers kept the WAL from being truncated; it is rewritten as "
                "the server writes (or run `nilemetrics forget` again with --vacuum)",
                highlight=False,
            )
        if do_vacuum:
            vacuum(engine)
            out_console.print("VACUUM done.")
        elif engine.dialect.name == "postgresql":
            out_console.print(
                "note: PostgreSQL keeps deleted rows in its files until VACUUM; "
                "run again with --vacuum, or VACUUM FULL to rewrite the tables."
            )
