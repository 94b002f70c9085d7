"""`nilemetrics init-db`: create or upgrade the schema in place."""

from __future__ import annotations

from nilemetrics.cli.options import DatabaseUrlOption, build_settings, err_console, fail
from nilemetrics.server.db import (
    DatabaseUnavailable,
    DatabaseUrlError,
    make_engine,
    migrate,
    redact_url,
)


def init_db(database_url: DatabaseUrlOption = None) -> None:
    """Create the schema, or upgrade it to this version, in place (idempotent).

    Example: nilemetrics init-db --database-url postgresql+psycopg://postgres@127.0.0.1/shop
    """
    settings = build_settings(database_url=database_url)
    url = settings.effective_database_url()
    try:
        engine = make_engine(url)
        before, after = migrate(engine)
    except (DatabaseUrlError, DatabaseUnavailable) as exc:
        fail(f"cannot set up {redact_url(url)}: {exc}")
    engine.dispose()
    where = redact_url(url)
    if before == after:
        err_console.print(f"schema of {where} is up to date (revision {after})", highlight=False)
    elif before is None:
        err_console.print(f"created schema revision {after} in {where}", highlight=False)
    else:
        err_console.print(f"upgraded {where} from revision {before} to {after}", highlight=False)
