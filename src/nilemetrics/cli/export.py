"""`nilemetrics export`: stream tables as CSV or JSON Lines; one person's data as JSON."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Column, ColumnElement, Connection, Engine, Table, func, select

from nilemetrics.cli.options import (
    DatabaseUrlOption,
    check_period,
    database_errors,
    err_console,
    fail,
    open_database,
    point_in_time,
    utc_now,
)
from nilemetrics.protocol import wire_time
from nilemetrics.server.erasure import Subject, SubjectError, collect_subject_data
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t
from nilemetrics.spreadsheet import formula_safe

#: Rows fetched per round trip; memory stays flat whatever the table size.
FETCH_ROWS = 2000


class What(StrEnum):
    """Exportable tables, by their command-line names."""

    SESSIONS = "sessions"
    PAGE_VISITS = "page-visits"
    CHECKOUTS = "checkouts"
    PAYMENT_ERRORS = "payment-errors"
    EVENTS = "events"
    CUSTOM_EVENTS = "custom-events"


class Format(StrEnum):
    """Output formats for table exports."""

    CSV = "csv"
    JSONL = "jsonl"


# Each table with the time column --since/--until filter on.
_SOURCES: dict[What, tuple[Table, str]] = {
    What.SESSIONS: (sessions_t, "started_at"),
    What.PAGE_VISITS: (visits_t, "entered_at"),
    What.CHECKOUTS: (checkouts_t, "started_at"),
    What.PAYMENT_ERRORS: (errors_t, "occurred_at"),
    What.EVENTS: (events_t, "occurred_at"),
    What.CUSTOM_EVENTS: (events_t, "occurred_at"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return wire_time(value)
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str):
        # Stored text (emails, URLs, error messages) comes from customers' browsers.
        return formula_safe(value)
    value = _plain(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def stream_rows(
    conn: Connection,
    table: Table,
    time_column: Column[Any],
    since: datetime | None,
    until: datetime | None,
    only: ColumnElement[bool] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """The table's rows in id order, fetched a batch at a time (server-side cursor)."""
    stmt = select(table).order_by(table.c.id)
    if since is not None:
        stmt = stmt.where(time_column >= since)
    if until is not None:
        stmt = stmt.where(time_column < until)
    if only is not None:
        stmt = stmt.where(only)
    result = conn.execution_options(yield_per=FETCH_ROWS).execute(stmt)
    for row in result:
        yield tuple(row)


def count_rows(
    conn: Connection,
    table: Table,
    time_column: Column[Any],
    since: datetime | None,
    until: datetime | None,
    only: ColumnElement[bool] | None = None,
) -> int:
    """How many rows an export will write (for the progress bar)."""
    stmt = select(func.count()).select_from(table)
    if since is not None:
        stmt = stmt.where(time_column >= since)
    if until is not None:
        stmt = stmt.where(time_column < until)
    if only is not None:
        stmt = stmt.where(only)
    return int(conn.execute(stmt).scalar_one())


def write_rows(
    out: IO[str], fmt: Format, names: list[str], rows: Iterator[tuple[Any, ...]]
) -> Iterator[int]:
    """Write rows as CSV or JSON Lines, yielding after every batch of rows written."""
    written = 0
    if fmt is Format.CSV:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([_csv_cell(v) for v in row])
            written += 1
            if written % FETCH_ROWS == 0:
                yield written
    else:
        for row in rows:
            record = {name: _plain(v) for name, v in zip(names, row, strict=True)}
            out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
            written += 1
            if written % FETCH_ROWS == 0:
                yield written
    yield written


def _drain(progress: Iterator[int]) -> int:
    last = 0
    for last in progress:  # noqa: B007 - only the final count matters
        continue
    return last


#: How text the output encoding cannot hold (a lone surrogate from a JSON column)
#: is written: as a backslash escape, which in JSON output is the same string.
ENCODING_ERRORS = "backslashreplace"


@contextlib.contextmanager
def _opened(output: Path | None) -> Iterator[IO[str]]:
    """The output stream; a file appears only complete (temporary file, then rename)."""
    if output is None or str(output) == "-":
        reconfigure = getattr(sys.stdout, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=ENCODING_ERRORS)
        yield sys.stdout
        sys.stdout.flush()  # a full disk shows here, as one line (see cli.main)
        return
    if output.exists() and not output.is_file():
        # A device or a pipe (/dev/stdout, a FIFO): nothing to rename; write in place.
        try:
            handle = output.open("w", encoding="utf-8", newline="", errors=ENCODING_ERRORS)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        try:
            with handle:
                yield handle
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        return
    try:
        # mkstemp creates the file 0600: exports hold emails and IPs.
        fd, name = tempfile.mkstemp(dir=output.absolute().parent, prefix=f".{output.name}.",
                                    suffix=".part")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    partial = Path(name)
    try:
        with open(fd, "w", encoding="utf-8", newline="", errors=ENCODING_ERRORS) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {output}: {exc.strerror or exc}; no file was written")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _export_table(
    engine: Engine,
    what: What,
    fmt: Format,
    since: datetime | None,
    until: datetime | None,
    output: Path | None,
) -> int:
    table, time_name = _SOURCES[what]
    time_column = table.c[time_name]
    # Custom events are the event log's rows with a name (through its partial index).
    only = events_t.c.name.is_not(None) if what is What.CUSTOM_EVENTS else None
    names = [c.name for c in table.columns]
    show_progress = output is not None and str(output) != "-" and err_console.is_terminal
    with engine.connect() as conn, _opened(output) as out:
        rows = stream_rows(conn, table, time_column, since, until, only)
        if not show_progress:
            return _drain(write_rows(out, fmt, names, rows))
        total = count_rows(conn, table, time_column, since, until, only)
        with Progress(
            TextColumn(f"exporting {what.value}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        ) as progress:
            task = progress.add_task(what.value, total=total)
            written = 0
            for written in write_rows(out, fmt, names, rows):
                progress.update(task, completed=written)
        return written


def export(
    what: Annotated[What, typer.Option(help="Which table to export.")] = What.SESSIONS,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.CSV,
    since: Annotated[
        str | None,
        typer.Option(help="Only rows from this time on: a duration ago (24h, 7d) or ISO time.",
                     show_default=False),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only rows before this time: a duration ago or ISO time.",
                     show_default=False),
    ] = None,
    email: Annotated[
        str | None,
        typer.Option(help="Export everything stored about this person as one JSON document "
                     "(GDPR right of access).", show_default=False),
    ] = None,
    phone: Annotated[
        str | None, typer.Option(help="Like --email, by phone.", show_default=False)
    ] = None,
    user_id: Annotated[
        str | None, typer.Option(help="Like --email, by the shop's user id.", show_default=False)
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: standard output).",
                     show_default=False, dir_okay=False),
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Export a table as CSV or JSON Lines (streamed), or one person's data as JSON.

    Example: nilemetrics export --what payment-errors --format jsonl --since 7d -o errors.jsonl
    Example: nilemetrics export --email jane@example.com -o jane.json
    """
    now = utc_now()
    start = point_in_time(since, "--since", now) if since else None
    end = point_in_time(until, "--until", now) if until else None
    check_period(start, end)
    subject: Subject | None = None
    if email is not None or phone is not None or user_id is not None:
        try:
            subject = Subject(email=email, phone=phone, user_id=user_id)
        except SubjectError as exc:
            fail(str(exc))
    engine, _settings = open_database(database_url)
    with database_errors(engine):
        if subject is not None:
            with engine.connect() as conn:
                document = collect_subject_data(conn, subject)
            document["exported_at"] = wire_time(now)
            with _opened(output) as out:
                json.dump(document, out, indent=2, ensure_ascii=False, default=str)
                out.write("\n")
            if output is not None:
                found = sum(len(v) for k, v in document.items() if isinstance(v, list))
                err_console.print(f"wrote {found} records about the person to {output}",
                                  highlight=False, soft_wrap=True)
            return
        written = _export_table(engine, what, fmt, start, end, output)
    if output is not None and str(output) != "-":
        err_console.print(f"wrote {written} {what.value} rows to {output}", highlight=False,
                          soft_wrap=True)
