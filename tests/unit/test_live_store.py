"""Where the live_metrics snapshot is stored: beside the writer (PostgreSQL) or in its turn."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Engine, select

from nilemetrics.protocol.pushed import LiveMetrics
from nilemetrics.server.ingestion.writer import GroupCommitWriter
from nilemetrics.server.services.live_numbers import LiveNumbers
from nilemetrics.server.state import Reader
from nilemetrics.server.tables import live_metrics_t
from tests.support import FakeClock


class StuckWriter:
    """A writer whose queue never gets to a job (a batch hangs); it counts the jobs asked for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs = 0
        self.portable: list[bool] = []

    async def run_job(self, job: Callable[[Connection], Any], *, notify: bool = True,
                      portable: bool = False) -> Any:
        self.jobs += 1
        self.portable.append(portable)
        await asyncio.sleep(3600)


def _stored(engine: Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(select(
            live_metrics_t.c.metric_type, live_metrics_t.c.metric_identifier,
            live_metrics_t.c.active_users_count,
        ))
        return {(kind, ident): n for kind, ident, n in rows}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_stores_the_snapshot_without_waiting_for_the_writer(
    any_engine: Engine,
) -> None:
    """A stuck writer queue does not hold the snapshot up: it has a transaction of its own."""
    writer = StuckWriter(any_engine)
    numbers = LiveNumbers(reader=Reader(any_engine, 5.0), writer=cast(GroupCommitWriter, writer),
                          clock=FakeClock(), live_window=90)
    metrics = LiveMetrics(homepage=2, categories={"garden": 1}, live_sessions=3,
                          pages={"homepage": 2, "category": 1})
    await asyncio.wait_for(numbers.store(metrics), 5)
    stored = _stored(any_engine)
    assert stored[("homepage", "")] == 2
    assert stored[("category", "garden")] == 1
    assert stored[("liveSessions", "")] == 3
    assert writer.jobs == 0
    # The next snapshot replaces it whole.
    await numbers.store(LiveMetrics(homepage=1, live_sessions=1, pages={"homepage": 1}))
    stored = _stored(any_engine)
    assert (stored[("homepage", "")], stored[("liveSessions", "")]) == (1, 1)
    assert ("category", "garden") not in stored


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_stores_the_snapshot_in_the_writers_turn(any_engine: Engine) -> None:
    """SQLite has one writer at a time: the snapshot waits for the writer's queue."""
    writer = StuckWriter(any_engine)
    numbers = LiveNumbers(reader=Reader(any_engine, 5.0), writer=cast(GroupCommitWriter, writer),
                          clock=FakeClock(), live_window=90)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(numbers.store(LiveMetrics(homepage=2, live_sessions=2)), 0.5)
    assert (writer.jobs, writer.portable) == (1, [True])
    assert _stored(any_engine) == {}


def _pid(conn: Connection) -> int:
    """A job telling which process ran it."""
    return os.getpid()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_portable_job_runs_in_the_writer_process(
    any_engine: Engine, database_url: str
) -> None:
    """The snapshot job on SQLite (portable) runs in the writer process, others in a thread."""
    writer = GroupCommitWriter(any_engine, max_batch=100, on_commit=lambda outcome: None,
                               process_url=database_url)
    await writer.start()
    try:
        there = await writer.run_job(_pid, notify=False, portable=True)
        here = await writer.run_job(_pid, notify=False)
        numbers = LiveNumbers(reader=Reader(any_engine, 5.0), writer=writer,
                              clock=FakeClock(), live_window=90)
        await numbers.store(LiveMetrics(homepage=4, live_sessions=4, pages={"homepage": 4}))
    finally:
        await writer.stop()
    assert here == os.getpid()
    assert there not in (os.getpid(), 0)
    assert _stored(any_engine)[("homepage", "")] == 4
