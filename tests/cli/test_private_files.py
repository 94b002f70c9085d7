"""Files holding personal data (the SQLite database, exports) are readable by their owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from nilemetrics.server.db import make_engine
from tests.cli.conftest import Invoke, run_cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_db_creates_database_files_0600(tmp_path: Path) -> None:
    """init-db creates the database 0600, and SQLite's -wal and -shm follow it."""
    path = tmp_path / "db" / "metrics.db"
    old = os.umask(0o022)
    try:
        result = run_cli(["init-db", "--database-url", f"sqlite:///{path}"])
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert _mode(path) == 0o600
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:  # an open connection keeps -wal and -shm on disk
        conn.execute(text("SELECT count(*) FROM user_sessions"))
        assert _mode(Path(f"{path}-wal")) == 0o600
        assert _mode(Path(f"{path}-shm")) == 0o600
    engine.dispose()


def test_reading_commands_still_do_not_create_a_database(tmp_path: Path, nm: Invoke) -> None:
    """The 0600 file is made on connect only: `report` on a missing file creates nothing."""
    path = tmp_path / "absent.db"
    result = nm("report", "--database-url", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert not path.exists()
