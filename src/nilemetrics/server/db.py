"""Engines, SQLite tuning and versioned schema setup (Alembic)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Arbitrary constant key for the PostgreSQL advisory lock held while migrating,
#: so several `serve` processes starting together migrate one at a time.
_MIGRATION_LOCK_KEY = 7_305_441_862

#: A pooled PostgreSQL connection idle for longer than this is pinged before it is
#: handed out (seconds); one used more recently is trusted (see _ping_when_idle).
PING_AFTER_IDLE_S = 1.0


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is locked; the request may be retried."""


class DatabaseUrlError(ValueError):
    """The database URL is malformed or names an unsupported driver."""


def make_engine(
    url: str, *, busy_timeout: float = 5.0, pg_options: str | None = None, **kwargs: Any
) -> Engine:
    """Create an engine tuned for this workload.

    SQLite: WAL (readers never block the writer), ``synchronous=FULL`` (a commit
    is on disk before we answer), a busy timeout, and ``BEGIN IMMEDIATE`` for
    transactions that write, so a writer never fails upgrading a read lock.
    PostgreSQL: ``pg_options`` are libpq ``options`` (``-c name=value`` session
    settings) for every connection of this engine.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(f"invalid database URL {url!r}") from exc
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseUrlError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB"
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.host:
            # sqlite://relative.db: SQLAlchemy reads "relative.db" as a host name.
            raise DatabaseUrlError(
                f"invalid SQLite URL {url!r}: a file needs three slashes, "
                f"sqlite:///{parsed.host}{'/' + parsed.database if parsed.database else ''} "
                "(relative to the current directory) or sqlite:////absolute/path.db"
            )
        path = None
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database).expanduser()
            _sqlite_directory(path)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        try:
            engine = create_engine(parsed, **kwargs)
        except NoSuchModuleError as exc:
            raise DatabaseUrlError(f"unsupported database driver in {url!r}") from exc
        except ArgumentError as exc:
            raise DatabaseUrlError(f"invalid SQLite URL {url!r}: {exc}") from exc
        _tune_sqlite(engine, busy_timeout, path)
        return engine
    kwargs.setdefault("pool_size", 5)
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if pg_options:
        connect_args["options"] = pg_options
    kwargs.setdefault("connect_args", connect_args)
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise DatabaseUrlError(
            f"unsupported database driver in {url!r}: use postgresql+psycopg://"
        ) from exc
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine, PING_AFTER_IDLE_S)
    return engine


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """Ping a pooled connection before handing it out, if it has been idle a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip before
    each of the writer's batches, which under load costs more than the batch's
    statements (a trip through both processes' schedulers). A connection that was
    in use a moment ago was alive a moment ago; one idle for ``idle`` seconds (the
    database may have restarted since) is pinged, and a dead one is replaced
    (``DisconnectionError``: the pool connects anew). A connection that dies in use
    fails its statement, and SQLAlchemy then discards the pool's connections.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["nm_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("nm_idle_since")  # None: connected just now
        if since is None or time.monotonic() - since < idle:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):  # type: ignore[arg-type]
                raise DisconnectionError(f"connection found dead when pinged: {exc}") from exc
            raise


def _sqlite_directory(path: Path) -> None:
    """Create the database file's directory, or say in one line why it cannot be."""
    parent = path.parent
    blocking = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise DatabaseUrlError(
            f"cannot use SQLite file {path}: {blocking} is a file, not a directory; "
            "pass a path inside a directory"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUrlError(
            f"cannot create directory {parent} for SQLite file {path}: "
            f"{exc.strerror or exc}; pass a path in a writable directory"
        ) from exc


def _tune_sqlite(engine: Engine, busy_timeout: float, path: Path | None = None) -> None:
    if path is not None:

        @event.listens_for(engine, "do_connect")
        def _create_private(*_args: Any) -> None:
            # The file holds emails and IPs: create it 0600 before SQLite creates it
            # 0644. SQLite gives its -wal and -shm files the database file's mode.
            # Any other failure (no directory, no permission) SQLite reports itself.
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so that we issue BEGIN.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten rows are zeroed, so erased personal data does not
        # linger in free space of the file (GDPR erasure; see server/erasure.py).
        cursor.execute("PRAGMA secure_delete=ON")
        # Fold the WAL back every ~40 MB instead of every ~4 MB: a checkpoint writes
        # each changed page once however often it changed, and the live tables'
        # pages change with nearly every batch, so rarer checkpoints write far fewer
        # pages (measured with benchmarks/ingest.py, README "Performance"). Commits
        # are as durable as before (synchronous=FULL syncs the WAL at each commit);
        # erasure still truncates the WAL (erasure.checkpoint_sqlite).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        # A WAL file keeps its largest size; one that grew past this (a long reader
        # held checkpoints back) is cut back to it once folded. Above the ~40 MB of
        # normal operation, so ordinary commits never pay for regrowing the file.
        # On small disks the writer folds the WAL back early (writer._WalKeeper).
        cursor.execute("PRAGMA journal_size_limit=67108864")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def write_options(conn: Connection) -> Connection:
    """Mark a connection's next transaction as a writing one (``BEGIN IMMEDIATE`` on SQLite)."""
    return conn.execution_options(sqlite_immediate=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the package holds no schema migrations (a broken install?)")
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema in place; safe to run again and concurrently.

    Returns the revision before and after.
    """
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                before = MigrationContext.configure(conn).get_current_revision()
                command.upgrade(alembic_config(conn), "head")
                conn.commit()
            finally:
                if engine.dialect.name == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                    conn.commit()
    except DBAPIError as exc:
        raise DatabaseUnavailable(describe_db_error(exc)) from exc
    return before, head_revision()


def describe_db_error(exc: BaseException) -> str:
    """One line saying what went wrong with the database, without the SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()
    message = first[0] if first else type(orig).__name__
    if message == "unable to open database file":  # SQLite says no more than that
        message += " (check that its directory exists and is writable)"
    return message


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
