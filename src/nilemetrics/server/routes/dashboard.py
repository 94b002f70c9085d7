"""Dashboard and operations endpoints (bearer token: they carry personal data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from nilemetrics.protocol.history import SessionsOut
from nilemetrics.protocol.names import API_PREFIX
from nilemetrics.protocol.operations import CleanupOut
from nilemetrics.protocol.pushed import LiveMetrics, PageSessionsOut, PaymentErrorRow
from nilemetrics.server.journeys import Person, sessions_of
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
        Query(description="ISO 8601 time; default: one hour before until. Naive times are UTC."),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="ISO 8601 time: only errors before it (the table as it was then, "
              "for replay); default: none. Naive times are UTC."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most rows to return.")] = 50,
) -> list[PaymentErrorRow]:
    """Payment errors, newest first, with checkout context and contact fields."""
    end = None if until is None else _utc(until)
    start = _utc(since) if since is not None else (end or state.now()) - timedelta(hours=1)
    if end is not None and end <= start:
        raise HTTPException(422, "until: must be after since")
    return await state.read(lambda conn: payment_error_rows(conn, start, limit, end))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


_PERSON_NOTE = "Whole value, never a substring"


@router.get(
    "/sessions",
    response_model=SessionsOut | PageSessionsOut,
    responses=problems(422),
)
async def sessions(
    state: StateDep,
    email: Annotated[
        str | None,
        Query(max_length=320, description=f"A person's sessions by email ({_PERSON_NOTE}; "
              "any case). Answered as SessionsOut."),
    ] = None,
    phone: Annotated[
        str | None, Query(max_length=64, description=f"By phone ({_PERSON_NOTE}).")
    ] = None,
    user_id: Annotated[
        str | None,
        Query(alias="userId", max_length=255, description=f"By the shop's user id "
              f"({_PERSON_NOTE})."),
    ] = None,
    page: Annotated[
        list[str] | None,
        Query(description="Page type(s) whose live sessions to list (repeat for several). "
              "Answered as PageSessionsOut, longest on the page first."),
    ] = None,
    id: Annotated[
        str | None, Query(description="Only sessions on the page with this identifier.")
    ] = None,
    live: Annotated[bool, Query(description="With page: live sessions (the only kind "
                                "listed by page).")] = True,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Sessions to skip.")] = 0,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Most sessions to list "
                                       "(default: 50 by person, 200 by page).")] = None,
) -> SessionsOut | PageSessionsOut:
    """Sessions of one person, newest first (``email``, ``phone`` or ``userId``), or the live
    sessions on a page (``page``, ``id``): since when, who, where they came from.

    The person's selector is masked in the server's logs. Paginated with
    ``offset`` and ``limit``; ``total`` counts all matches.
    """
    given = {name: value for name, value in
             (("email", email), ("phone", phone), ("userId", user_id)) if value is not None}
    now = state.now()
    window = state.settings.live_window
    if given:
        if page:
            raise HTTPException(422, "page: give a person (email, phone or userId) or a page, "
                                "not both")
        if len(given) > 1:
            raise HTTPException(422, f"{'/'.join(given)}: give one of email, phone or userId")
        [(name, value)] = given.items()
        value = value.strip()
        if not value:
            raise HTTPException(422, f"{name}: must not be empty")
        person = Person({"userId": "user_id"}.get(name, name), value)
        count = limit or 50
        return await state.read(
            lambda conn: sessions_of(conn, person, now, window, offset, count)
        )
    if not page:
        raise HTTPException(422, "page: field required (or give email, phone or userId)")
    if not live:
        raise HTTPException(422, "live: only live sessions can be listed (live=true)")
    pages, ident, count = list(page), id, limit or 200
    return await state.read(
        lambda conn: live_sessions_on_pages(conn, now, window, pages, ident, count, offset)
    )


@router.post("/cleanup-sessions", response_model=CleanupOut, responses=problems(413))
async def cleanup_sessions(state: StateDep) -> CleanupOut:
    """End sessions idle past the session timeout now (the cleanup loop's work)."""
    ended = await run_cleanup(state)
    return CleanupOut(ended=ended)

