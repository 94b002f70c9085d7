"""Ending sessions idle past the timeout — the one implementation the server's loop,
``POST /cleanup-sessions`` and ``nilemetrics cleanup`` all use."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, true, update

from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.outage import OutageLog
from nilemetrics.server.tables import latest_visit_id, sessions_t, visits_t

if TYPE_CHECKING:
    from nilemetrics.server.leader import Leadership
    from nilemetrics.server.state import ServerState

log = logging.getLogger(__name__)

_CHUNK = 1000

_END_SESSION = (
    update(sessions_t)
    .where(
        (sessions_t.c.session_id == bindparam("b_session_id"))
        & (sessions_t.c.is_active == true())
        & (sessions_t.c.last_activity == bindparam("b_last_activity"))
    )
    .values(is_active=False, ended_at=bindparam("ended_at"))
)

_CLOSE_VISIT = (
    update(visits_t)
    .where((visits_t.c.id == bindparam("b_id")) & (visits_t.c.is_active == true()))
    .values(
        is_active=False,
        exited_at=bindparam("exited_at"),
        duration_seconds=bindparam("duration_seconds"),
    )
)


def stale_session_count(conn: Connection, now: datetime, timeout_seconds: float) -> int:
    """How many sessions cleanup would end now (for ``--dry-run``)."""
    cutoff = now - timedelta(seconds=timeout_seconds)
    s = sessions_t.c
    stmt = select(s.id).where((s.is_active == true()) & (s.last_activity < cutoff))
    return len(conn.execute(stmt).all())


def end_stale_sessions(conn: Connection, now: datetime, timeout_seconds: float) -> tuple[int, int]:
    """End sessions idle for longer than the timeout, in the caller's transaction.

    Each ended session gets ``ended_at`` = its last activity, and its open page
    visit is closed with the duration up to that last activity. Returns
    (sessions ended, page visits closed).
    """
    cutoff = now - timedelta(seconds=timeout_seconds)
    s, v = sessions_t.c, visits_t.c
    ended = closed = 0
    while True:
        stmt = (
            # Each session's open visit is its latest one, if open: its id comes with
            # the session (one seek each), never by walking the session's history.
            select(s.session_id, s.last_activity,
                   latest_visit_id(s.session_id).label("latest_visit_id"))
            .where((s.is_active == true()) & (s.last_activity < cutoff))
            .order_by(s.last_activity)
            .limit(_CHUNK)
        )
        if conn.dialect.name == "postgresql":
            # Skip sessions a concurrent writer holds; they just got an event anyway.
            stmt = stmt.with_for_update(skip_locked=True)
        rows = conn.execute(stmt).all()
        if not rows:
            break
        last_activity = {row.session_id: row.last_activity for row in rows}
        latest = [row.latest_visit_id for row in rows if row.latest_visit_id is not None]
        visits = conn.execute(
            select(v.id, v.session_id, v.entered_at).where(
                v.id.in_(latest) & (v.is_active == true())
            )
        ).all()
        closes: list[dict[str, Any]] = []
        for visit in visits:
            until = max(last_activity[visit.session_id], visit.entered_at)
            closes.append(
                {
                    "b_id": visit.id,
                    "exited_at": until,
                    "duration_seconds": (until - visit.entered_at).total_seconds(),
                }
            )
        if closes:
            conn.execute(_CLOSE_VISIT, closes)
            closed += len(closes)
        # The rows are locked (PostgreSQL) or the database is (SQLite): all of them end.
        conn.execute(
            _END_SESSION,
            [
                {"b_session_id": sid, "b_last_activity": at, "ended_at": at}
                for sid, at in last_activity.items()
            ],
        )
        ended += len(rows)
        if len(rows) < _CHUNK:
            break
    return ended, closed


async def run_cleanup(state: ServerState) -> int:
    """One cleanup tick: end stale sessions, push fresh numbers and a heartbeat."""
    now = state.now()
    timeout = state.settings.session_timeout
    ended, _closed = await state.writer.run_job(
        lambda conn: end_stale_sessions(conn, now, timeout)
    )
    state.hub.mark_dirty()
    state.hub.heartbeat(now, state.settings.cleanup_interval)
    return int(ended)


async def cleanup_loop(state: ServerState, outage: OutageLog, leader: Leadership) -> None:
    """Run a cleanup tick every ``cleanup_interval`` until cancelled; never give up.

    Only the leader of all the processes on the database cleans up; every process
    sends its own subscribers the heartbeat.
    """
    while True:
        await asyncio.sleep(state.settings.cleanup_interval)
        if not leader.is_leader():
            # Not while the database is away: a heartbeat says the numbers are current.
            if leader.database_reachable():
                state.hub.heartbeat(state.now(), state.settings.cleanup_interval)
            continue
        try:
            ended = await run_cleanup(state)
            outage.succeeded()
            log.log(logging.INFO if ended else logging.DEBUG,
                    "cleanup (leader, pid %d): ended %d idle sessions", os.getpid(), ended)
        except DatabaseUnavailable as exc:
            log.warning("cleanup skipped: database unavailable (%s)", exc)
        except Exception:
            log.exception("cleanup tick failed")
