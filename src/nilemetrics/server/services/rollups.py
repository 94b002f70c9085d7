"""The leader's rollup job: sample the live numbers each minute, count finished minutes,
fold hours and drop old minute rows (see ``nilemetrics.server.rollups``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection

from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.rollups import (
    MINUTE,
    count_minutes,
    drop_old_minutes,
    floor_time,
    fold_hours,
    has_work,
    sample_live,
)

if TYPE_CHECKING:
    from nilemetrics.server.leader import Leadership
    from nilemetrics.server.state import ServerState

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Key of the PostgreSQL advisory lock held by a rollup transaction: two processes that
#: both briefly believe they lead take turns instead of writing the same rows.
ROLLUP_LOCK_KEY = 7_305_441_866

#: Seconds after a minute starts that the tick wakes (its sample describes that minute).
_WAKE_AFTER = 1.0


def _locked(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ROLLUP_LOCK_KEY})")


async def _write(state: ServerState, job: Callable[[Connection], T]) -> T:
    """Run a rollup transaction: on SQLite in the writer's turn (one writer at a time);
    on PostgreSQL on a connection of its own, so ingestion's group commits never pause
    for it (its rows are nobody else's)."""
    if state.engine.dialect.name == "postgresql":
        return await state.read(job)  # a transaction of its own, committed at the end
    return await state.writer.run_job(job, notify=False)


async def run_rollups(state: ServerState) -> int:
    """One tick: sample this minute, count every finished minute, fold; minutes counted.

    Most ticks find nothing to do (a read, no write): the writer is asked for a turn
    only at the start of a minute.
    """
    now = state.now()
    window = state.settings.live_window
    if not await state.read(lambda conn: has_work(conn, now)):
        return 0
    counted = 0
    while True:  # catching up: one short transaction per chunk, batches in between

        def step(conn: Connection) -> tuple[datetime, datetime] | None:
            _locked(conn)
            sample_live(conn, now, window)
            done = count_minutes(conn, now)
            if done is None:
                fold_hours(conn)
                drop_old_minutes(conn, now)
            return done

        done = await _write(state, step)
        if done is None:
            return counted
        counted += int((done[1] - done[0]).total_seconds()) // MINUTE


def _until_next_tick(now: datetime, interval: float) -> float:
    start = floor_time(now, MINUTE)
    wait = (start - now).total_seconds() + MINUTE + _WAKE_AFTER
    return max(0.05, min(interval, wait))


async def rollup_loop(state: ServerState, leader: Leadership) -> None:
    """Run a rollup tick at the start of every minute (and at least every
    ``rollup_interval``) while this process leads; until cancelled, never giving up."""
    first = True
    while True:
        if not first:
            await asyncio.sleep(_until_next_tick(state.now(), state.settings.rollup_interval))
        first = False
        if not leader.is_leader():
            await leader.wait_until_leader()
        try:
            counted = await run_rollups(state)
            if counted > 1:
                log.info("rollups: counted %d minutes (catching up)", counted)
        except DatabaseUnavailable as exc:
            log.warning("rollups skipped: database unavailable (%s)", exc)
        except Exception:
            log.exception("rollup tick failed")
