"""History, replay, customer journeys and the report (bearer token, like the dashboard)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from nilemetrics.protocol import wire_time
from nilemetrics.protocol.history import HistoryOut, JourneyOut, Step
from nilemetrics.protocol.names import API_PREFIX
from nilemetrics.protocol.pushed import LiveMetrics
from nilemetrics.protocol.report import ReportOut
from nilemetrics.server.journeys import journey
from nilemetrics.server.openapi import problems
from nilemetrics.server.reports import build_report
from nilemetrics.server.rollups import (
    MINUTE_RETENTION,
    HistoryRangeError,
    history,
    history_buckets,
    live_at,
)
from nilemetrics.server.state import StateDep, TokenDep

router = APIRouter(
    prefix=API_PREFIX, tags=["history"], dependencies=[TokenDep], responses=problems(401, 503)
)

_UTC_NOTE = "ISO 8601 time; naive times are UTC."
#: The range a period must lie in (beyond it, bucket arithmetic runs out of datetimes).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _period(
    since: datetime | None, until: datetime | None, now: datetime, default: timedelta
) -> tuple[datetime, datetime]:
    end = _utc(until) or now
    start = _utc(since) or end - default
    for name, value in (("since", start), ("until", end)):
        if value < _EARLIEST:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"{name}: must be in the year 2000 or later")
        if value >= _LATEST:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"{name}: must be before the year 9000")
    if end <= start:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"until: must be after since (since {wire_time(start)}, until {wire_time(end)})",
        )
    return start, end


@router.get("/history", response_model=HistoryOut, responses=problems(422))
async def get_history(
    state: StateDep,
    since: Annotated[datetime | None, Query(description=f"{_UTC_NOTE} Default: a day "
                                            "before until.")] = None,
    until: Annotated[datetime | None, Query(description=f"{_UTC_NOTE} Default: now.")] = None,
    step: Annotated[Step, Query(description="Width of one bucket.")] = Step.MINUTE,
) -> HistoryOut:
    """What happened per bucket: live sessions (per page type), sessions, page visits,
    checkouts, payment errors (per code), successes and amounts.

    Buckets are aligned on the step (days on UTC midnight) and cover ``since`` to
    ``until``; every bucket is present, zeros where nothing happened. At most 5,000
    buckets. Kept per minute for 14 days, then per hour (finer steps of older
    history show each hour in the bucket where it starts).
    """
    start, end = _period(since, until, state.now(), timedelta(days=1))
    try:
        history_buckets(start, end, step)
    except HistoryRangeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    now = state.now()
    return await state.read(lambda conn: history(conn, start, end, step, now))


@router.get("/history/snapshot", response_model=LiveMetrics, responses=problems(404, 422))
async def get_snapshot(
    state: StateDep,
    at: Annotated[datetime, Query(description=f"{_UTC_NOTE} Any time in the minute wanted.")],
) -> LiveMetrics:
    """The live numbers as they were at the start of a minute (for replay).

    Sampled each minute while a server runs and kept 14 days; counts only, no
    personal data. 404 for a minute with no sample.
    """
    when = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    found = await state.read(lambda conn: live_at(conn, when))
    if found is None:
        oldest = state.now() - MINUTE_RETENTION
        why = ("it is older than the 14 days minutes are kept" if when < oldest
               else "no server was sampling then")
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no live numbers recorded for the minute of {wire_time(when)}: {why}",
        )
    return found


@router.get("/sessions/{session_id}", response_model=JourneyOut, responses=problems(404, 422))
async def get_journey(
    state: StateDep,
    session_id: Annotated[str, Path(description="The session id (a UUID).", max_length=64)],
) -> JourneyOut:
    """One session's journey: every page with its time, every checkout with each failed
    payment attempt, browser and device, start, end, total time and where it left."""
    try:
        canonical = str(uuid.UUID(session_id))
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "session_id: not a session id (a UUID)") from None
    now, window = state.now(), state.settings.live_window
    # Stored as the client sent it (normally lower-case canonical); try that first.
    found = await state.read(lambda conn: journey(conn, session_id, now, window)
                             or journey(conn, canonical, now, window))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {canonical}")
    return found


@router.get("/report", response_model=ReportOut, responses=problems(422))
async def get_report(
    state: StateDep,
    since: Annotated[datetime | None, Query(description=f"{_UTC_NOTE} Default: a day "
                                            "before until.")] = None,
    until: Annotated[datetime | None, Query(description=f"{_UTC_NOTE} Default: now.")] = None,
) -> ReportOut:
    """Session analytics over a period, the same as ``nilemetrics report --json``: time on
    page, funnel with drop-off, abandonment points, error codes, retries, success rates."""
    start, end = _period(since, until, state.now(), timedelta(days=1))
    body = await state.read(lambda conn: build_report(conn, start, end))
    return ReportOut.model_validate(body)
