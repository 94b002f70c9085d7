"""Dashboard and operations endpoints (bearer token: they carry personal data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from nilemetrics.protocol.names import API_PREFIX
from nilemetrics.protocol.operations import CleanupOut
from nilemetrics.protocol.pushed import LiveMetrics, PageSessionsOut, PaymentErrorRow
from nilemetrics.server.live import live_sessions_on_pages, payment_error_rows, snapshot
from nilemetrics.server.openapi import problems
from nilemetrics.server.services.cleanup import run_cleanup
from nilemetrics.server.state import StateDep, TokenDep

router = APIRouter(
    prefix=API_PREFIX, tags=["dashboard"], dependencies=[TokenDep], responses=problems(401, 503)
)


@router.get("/live-metrics", response_model=LiveMetrics)
async def live_metrics(state: StateDep) -> LiveMetrics:
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
) -> list[PaymentErrorRow]:
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
) -> PageSessionsOut:
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

