"""`nilemetrics cleanup`: ending idle sessions and purging old history."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t
from tests.cli.conftest import Invoke
from tests.cli.seed import seed

TABLES = (sessions_t, visits_t, checkouts_t, errors_t, events_t)


def totals(url: str) -> dict[str, int]:
    """Row count per table."""
    engine = make_engine(url)
    with engine.connect() as conn:
        out = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in TABLES
        }
    engine.dispose()
    return out


def test_cleanup_ends_idle_session_and_closes_its_visit(database_url: str, nm: Invoke) -> None:
    """S4, idle 45 min, is ended at its last activity; its open visit gets that duration."""
    seeded = seed(database_url)
    result = nm("cleanup", "--session-timeout", "30m", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "user_sessions │ ended (idle > 30m) │    1" in result.stdout
    assert "page_visits   │ closed             │    1" in result.stdout
    engine = make_engine(database_url)
    s, v = sessions_t.c, visits_t.c
    with engine.connect() as conn:
        row = conn.execute(select(s.is_active, s.ended_at, s.last_activity).where(
            s.session_id == seeded.sessions["S4"])).one()
        visit = conn.execute(select(v.is_active, v.duration_seconds, v.exited_at).where(
            (v.session_id == seeded.sessions["S4"]) & (v.page_type == "product"))).one()
    engine.dispose()
    assert row.is_active is False and row.ended_at == row.last_activity
    # Entered 40 s after the session's start (now - 50 min), idle since now - 45 min.
    assert visit.is_active is False
    assert visit.duration_seconds == 260.0
    assert visit.exited_at == row.last_activity
    again = nm("cleanup", "--database-url", database_url)
    assert "user_sessions │ ended (idle > 30m) │    0" in again.stdout


def test_cleanup_default_timeout_keeps_recent_sessions(database_url: str, nm: Invoke) -> None:
    """With a 1 h timeout nothing is idle long enough; nothing changes."""
    seed(database_url)
    before = totals(database_url)
    result = nm("cleanup", "--session-timeout", "1h", "--database-url", database_url)
    assert result.exit_code == 0
    assert "ended (idle > 1h) │    0" in result.stdout
    assert totals(database_url) == before


def test_purge_deletes_only_old_history(database_url: str, nm: Invoke) -> None:
    """--purge-older-than 90d removes the 100-day-old session S6 and all its rows only."""
    seeded = seed(database_url)
    before = totals(database_url)
    result = nm("cleanup", "--purge-older-than", "90d", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "page_visits       │ deleted (older than 90d) │    2" in out
    assert "payment_errors    │ deleted (older than 90d) │    1" in out
    assert "checkout_sessions │ deleted (older than 90d) │    1" in out
    assert "events            │ deleted (older than 90d) │    3" in out
    assert "user_sessions     │ deleted (older than 90d) │    1" in out
    after = totals(database_url)
    assert after == {
        "user_sessions": before["user_sessions"] - 1,
        "page_visits": before["page_visits"] - 2,
        "checkout_sessions": before["checkout_sessions"] - 1,
        "payment_errors": before["payment_errors"] - 1,
        "events": before["events"] - 3,
    }
    engine = make_engine(database_url)
    with engine.connect() as conn:
        left = conn.execute(select(sessions_t.c.session_id)).scalars().all()
    engine.dispose()
    assert seeded.sessions["S6"] not in left and seeded.sessions["S1"] in left


def test_purge_in_chunks(
    database_url: str, nm: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge larger than one chunk deletes everything in several short transactions."""
    seed(database_url)
    monkeypatch.setattr("nilemetrics.server.retention.PURGE_CHUNK", 2)
    result = nm("cleanup", "--session-timeout", "2h", "--purge-older-than", "1s",
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    after = totals(database_url)
    # Only S4 (still active) and its open product visit survive.
    assert after["user_sessions"] == 1
    assert after["page_visits"] == 1
    assert after["checkout_sessions"] == 0 and after["events"] == 0


def test_dry_run_counts_without_changing(database_url: str, nm: Invoke) -> None:
    """--dry-run prints what would happen per table and changes no row."""
    seed(database_url)
    before = totals(database_url)
    result = nm("cleanup", "--session-timeout", "30m", "--purge-older-than", "90d", "--dry-run",
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "(dry run)" in result.stdout
    assert "would end (idle > 30m)" in result.stdout
    assert "events            │ would delete (older than 90d) │    3" in result.stdout
    assert totals(database_url) == before


def test_concurrent_cleanups_do_not_fail(database_url: str) -> None:
    """Three cleanup processes at once (cron overlap) all succeed; each row changes once."""
    seed(database_url)
    args = [sys.executable, "-m", "nilemetrics", "cleanup", "--session-timeout", "30m",
            "--purge-older-than", "90d", "--database-url", database_url]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    ended = sum(
        int(line.split("│")[3]) for out, _err in outputs for line in out.splitlines()
        if "ended (idle" in line
    )
    purged = sum(
        int(line.split("│")[3]) for out, _err in outputs for line in out.splitlines()
        if line.startswith("│ user_sessions") and "deleted" in line
    )
    assert ended == 1 and purged == 1
    assert totals(database_url)["user_sessions"] == 5  # of 6: S6 purged; S4 ended, kept


def test_bad_duration_is_one_line(nm: Invoke) -> None:
    """An unparseable duration is one error line and exit 1, before any database work."""
    result = nm("cleanup", "--purge-older-than", "3x")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --purge-older-than: invalid duration '3x': use a number of seconds or forms "
        "like 90s, 30m, 1h30m, 7d"
    ]
