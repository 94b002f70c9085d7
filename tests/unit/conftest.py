"""A migrated SQLite database per test, copied from one migrated once per run (fast)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nilemetrics.server.db import make_engine, migrate


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file at the head revision; migrating takes longer than all these tests."""
    path = tmp_path_factory.mktemp("template") / "metrics.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file
    return path


@pytest.fixture
def engine(_migrated_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty, migrated SQLite database of this test's own."""
    path = tmp_path / "metrics.db"
    shutil.copyfile(_migrated_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()

