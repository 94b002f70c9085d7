"""Dashboard and operations endpoints (bearer token: they carry personal data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from nilemetrics.protocol import API_PREFIX, wire_time
from nilemetrics.server.cleanup import end_stale_sessions
from nilemetrics.server.live import live_sessions_on_pages, payment_error_rows, snapshot
from nilemetrics.server.schemas import (
    CleanupOut,
    LiveMetricsOut,
    PageSessionsOut,
    PaymentErrorRow,
    problems,
)
from nilemetrics.server.state import ServerState, StateDep, TokenDep

router = APIRouter(
    prefix=API_PREFIX, tags=["dashboard"], dependencies=[TokenDep], responses=problems(401, 503)
)


@router.get("/live-metrics", response_model=LiveMetricsOut)
async def live_metrics(state: StateDep) -> dict[str, Any]:
    """Live sessions per page now, and the last hour's payment figures."""
    now = state.now()
    window = state.settings.live_window
    return await state.read(lambda conn: snapshot(conn, now, window))


@router.get(
    "/payment-errors", response_model=list[PaymentErrorRow], responses=problems(422)
)
async def payment_errors(
    state: StateDep,
    since: Annotated[
        datetime | None,
        Query(description="ISO 8601 time; default: one hour ago. Naive times are UTC."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most rows to return.")] = 50,
) -> list[dict[str, Any]]:
    """Payment errors, newest first, with checkout context and contact fields."""
    if since is None:
        since = state.now() - timedelta(hours=1)
    elif since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    start = since
    return await state.read(lambda conn: payment_error_rows(conn, start, limit))


@router.get("/sessions", response_model=PageSessionsOut, responses=problems(422))
async def page_sessions(
    state: StateDep,
    page: Annotated[
        list[str],
        Query(min_length=1, description="Page type(s) whose live sessions to list "
              "(repeat for several)."),
    ],
    id: Annotated[
        str | None, Query(description="Only sessions on the page with this identifier.")
    ] = None,
    live: Annotated[bool, Query(description="Live sessions (the only kind listed).")] = True,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most sessions to list.")] = 200,
) -> dict[str, Any]:
    """Live sessions on a page (type, identifier): since when, who, where they came from."""
    if not live:
        raise HTTPException(422, "live: only live sessions can be listed (live=true)")
    now = state.now()
    window = state.settings.live_window
    pages, ident = list(page), id
    return await state.read(
        lambda conn: live_sessions_on_pages(conn, now, window, pages, ident, limit)
    )


@router.post("/cleanup-sessions", response_model=CleanupOut, responses=problems(413))
async def cleanup_sessions(state: StateDep) -> CleanupOut:
    """End sessions idle past the session timeout now (the cleanup loop's work)."""
    ended = await run_cleanup(state)
    return CleanupOut(ended=ended)


async def run_cleanup(state: ServerState) -> int:
    """One cleanup tick: end stale sessions, push fresh numbers and a heartbeat."""
    now = state.now()
    timeout = state.settings.session_timeout
    ended, _closed = await state.writer.run_job(
        lambda conn: end_stale_sessions(conn, now, timeout)
    )
    state.hub.mark_dirty()
    send_heartbeat(state, now)
    return int(ended)


def send_heartbeat(state: ServerState, now: datetime | None = None) -> None:
    """``metrics-heartbeat`` to this process's subscribers (every process sends its own)."""
    state.hub.heartbeat(wire_time(now or state.now()), state.settings.cleanup_interval)
