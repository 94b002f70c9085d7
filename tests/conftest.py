"""Shared fixtures: databases (SQLite and PostgreSQL), settings, a live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nilemetrics.config import Settings
from tests.support import (
    FakeClock,
    LiveServer,
    pg_available,
    run_server,
    temporary_pg_database,
    truncate_all,
)

TEST_TOKEN = "test-token-0123456789"
BROWSER_TESTS = Path(__file__).parent / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/browser carries the ``browser`` marker (``-m browser``).

    A ``pytestmark`` in a conftest marks nothing: the marker is given here instead.
    """
    for item in items:
        if BROWSER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real config or data: every test gets its own dirs."""
    monkeypatch.setenv("NILEMETRICS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NILEMETRICS_CONFIG_DIR", str(tmp_path / "config"))
    for name in ("NILEMETRICS_DATABASE_URL", "NILEMETRICS_DASHBOARD_TOKEN", "NILEMETRICS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One throw-away PostgreSQL database for the whole run (tables emptied per test).

    In CI (CI=true) a missing PostgreSQL is a failure, locally a skip.
    """
    problem = pg_available()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({problem})")
    with temporary_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: a SQLite file, or the PostgreSQL test database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrics.db'}"
    url: str = request.getfixturevalue("pg_database")
    from nilemetrics.server.db import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    truncate_all(url)
    return url


@pytest.fixture
def any_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the parametrised database, empty, with the current schema."""
    from nilemetrics.server.db import make_engine, migrate

    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a test server on the parametrised database."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        dashboard_token=[TEST_TOKEN],
        allowed_origins=["http://shop.test"],
        cleanup_interval=3600,
        push_interval=0.05,
        refresh_interval=0.5,
    )


@pytest.fixture
def clock() -> FakeClock:
    """The server's clock; tests move it explicitly."""
    return FakeClock()


@pytest.fixture
def server(settings: Settings, clock: FakeClock) -> Iterator[LiveServer]:
    """A real server over real HTTP on a free port, on the parametrised database."""
    with run_server(settings, clock) as live:
        yield live
