"""Alembic environment: runs on the connection nilemetrics hands it (or on the URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nilemetrics.server.tables import metadata

config = context.config


def run_migrations() -> None:
    """Run migrations on the given connection, batch mode for SQLite's ALTER limits."""
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        assert url, "no connection and no sqlalchemy.url given"
        with create_engine(url).connect() as conn:
            _run(conn)
            conn.commit()
    else:
        _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
