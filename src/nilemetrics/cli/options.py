"""What the commands share: settings from flags and environment, the database option and
connection, durations and times, and the two consoles (tables to stdout, one-line errors
to stderr)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from nilemetrics.config import Settings
from nilemetrics.durations import parse_duration
from nilemetrics.server.db import (
    DatabaseUnavailable,
    DatabaseUrlError,
    current_revision,
    describe_db_error,
    head_revision,
    make_engine,
    redact_url,
)

#: Tables, Rich markup and summaries go to stdout.
out_console = Console(highlight=False)
err_console = Console(stderr=True, soft_wrap=True)  # one message, one line, even in logs

DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="NILEMETRICS_DATABASE_URL",
        help="SQLAlchemy URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB). "
        "Default: a SQLite file in your data directory.",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line and exit non-zero (never a traceback)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def build_settings(**overrides: Any) -> Settings:
    """Settings from ``NILEMETRICS_*`` variables, with given (non-None) flags on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        fail(f"invalid setting: {problems}")


def seconds(value: str, option: str) -> float:
    """A duration option's value in seconds, or a one-line error naming the option."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def point_in_time(value: str, option: str, now: datetime) -> datetime:
    """``24h`` (that long ago) or an ISO 8601 time (naive means UTC) as an aware datetime."""
    try:
        ago = parse_duration(value)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=ago)
        except OverflowError:
            fail(f"{option}: {value!r} is further back than any date")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(
            f"{option}: invalid time {value!r}: use a duration such as 24h or 7d, "
            "or an ISO time such as 2026-11-24T08:00:00Z"
        )
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def check_period(since: datetime | None, until: datetime | None) -> None:
    """A one-line error if ``--until`` is not after ``--since`` (the period would be empty)."""
    if since is not None and until is not None and until <= since:
        fail(
            f"--until ({until:%Y-%m-%dT%H:%M:%SZ}) is not after --since "
            f"({since:%Y-%m-%dT%H:%M:%SZ}): the period is empty; a duration means that "
            "long ago, so --since 2h --until 1h is the hour before last"
        )


def open_database(database_url: str | None) -> tuple[Engine, Settings]:
    """An engine on the configured database whose schema is current, or a one-line error."""
    settings = build_settings(database_url=database_url)
    url = settings.effective_database_url()
    where = redact_url(url)
    try:
        engine = make_engine(url, busy_timeout=settings.sqlite_busy_timeout)
    except DatabaseUrlError as exc:
        fail(str(exc))
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and path != ":memory:":
        # Connecting would create an empty file; say what is wrong instead.
        if not Path(path).expanduser().exists():
            engine.dispose()
            fail(f"no database at {path}: run `nilemetrics init-db` or pass --database-url")
    try:
        revision = current_revision(engine)
    except (DBAPIError, DatabaseUnavailable) as exc:
        engine.dispose()
        fail(f"cannot reach database {where}: {describe_db_error(exc)}")
    head = head_revision()
    if revision != head:
        engine.dispose()
        state = "has no nilemetrics schema" if revision is None else f"is at revision {revision}"
        fail(f"database {where} {state} (this version needs {head}): run `nilemetrics init-db`")
    return engine, settings


@contextlib.contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Turn a database failure in the block into one error line; dispose the engine."""
    try:
        yield
    except (DBAPIError, DatabaseUnavailable) as exc:
        fail(f"database error on {redact_url(engine.url.render_as_string())}: "
             f"{describe_db_error(exc)}")
    finally:
        engine.dispose()


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)
