"""PostgreSQL connections: pinged when idle, trusted when just used, dead ones replaced."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from nilemetrics.server import db
from nilemetrics.server.db import make_engine
from tests.support import PG_ADMIN_URL


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _terminate(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.postgres
def test_an_idle_connection_found_dead_is_replaced_before_use(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection whose server went away while it was idle (a restart at night)
    is pinged on checkout and replaced: the caller never sees the dead one."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.2)
    engine = make_engine(pg_database, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(first)
        time.sleep(0.3)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_used_a_moment_ago_is_not_pinged(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping round trip before each of the writer's batches: a connection checked in
    less than PING_AFTER_IDLE_S ago is handed out as is. If it died meanwhile, its
    statement fails (an outage, answered 503), and the next checkout connects anew."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)
    engine = make_engine(pg_database, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(first)
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
