"""Fixtures for API tests: an HTTP client on the live server and a database handle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import metadata
from tests.support import LiveServer


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client talking to the live server."""
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    """A separate engine on the server's database, to check what was stored."""
    engine = make_engine(settings.effective_database_url())
    yield engine
    engine.dispose()


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table (live_metrics and metric_rollups excluded: the server writes them on
    its own, on a clock of its own)."""
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
            if table.name not in {"live_metrics", "metric_rollups"}
        }


def rows(engine: Engine, table: Any, *where: Any) -> list[Any]:
    """All rows of a table (optionally filtered), oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(select(table).where(*where).order_by(table.c.id)))
