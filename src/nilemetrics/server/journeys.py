"""Sessions of one person, and what one session did: ``GET /sessions?email=`` and
``GET /sessions/{id}``.

A person's sessions are those whose session row or checkout row carries the
email (in any case), phone or user id asked for, compared as whole values (never
a substring). Each lookup is an index seek per table (``ix_*_email_lower``,
``ix_*_phone``, ``ix_*_user_id``) and then one seek per session found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, union

from nilemetrics.protocol.history import (
    JourneyAttempt,
    JourneyCheckout,
    JourneyOut,
    JourneyPage,
    SessionOut,
    SessionsOut,
)
from nilemetrics.server.live import wire_amount
from nilemetrics.server.tables import checkouts_t, errors_t, sessions_t, visits_t
from nilemetrics.useragent import describe_user_agent, device_kind


@dataclass(frozen=True)
class Person:
    """Whom to look up: exactly one of email, phone or user id (whole values)."""

    field: str  # "email", "phone" or "user_id"
    value: str

    def matches(self, table: Any) -> ColumnElement[bool]:
        """The condition on a session or checkout table's row (an index seek)."""
        column = table.c[self.field]
        if self.field == "email":
            # ix_*_email_lower; an email's case never matters.
            return func.lower(column) == self.value.lower()
        result: ColumnElement[bool] = column == self.value
        return result


def _live(row: Any, now: datetime, live_window: float) -> bool:
    return bool(
        row.is_active
        and row.current_page_type is not None
        and row.last_activity >= now - timedelta(seconds=live_window)
    )


def _session_out(row: Any, now: datetime, live_window: float, counts: dict[str, Any]) -> SessionOut:
    return SessionOut(
        session_id=row.session_id,
        user_id=row.user_id,
        email=row.email,
        phone=row.phone,
        started_at=row.started_at,
        last_activity=row.last_activity,
        ended_at=row.ended_at,
        live=_live(row, now, live_window),
        page_type=row.current_page_type,
        page_identifier=row.current_page_identifier,
        page_visits=counts.get("visits", 0),
        checkouts=counts.get("checkouts", 0),
        payment_errors=counts.get("errors", 0),
        paid=counts.get("paid", False),
    )


def _counts(conn: Connection, session_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Page visits, checkouts, payment errors and whether it paid, per session (index seeks)."""
    out: dict[str, dict[str, Any]] = {sid: {} for sid in session_ids}
    if not session_ids:
        return out
    v, c, e = visits_t.c, checkouts_t.c, errors_t.c
    for sid, n in conn.execute(
        select(v.session_id, func.count()).where(v.session_id.in_(session_ids))
        .group_by(v.session_id)
    ):
        out[sid]["visits"] = n
    for sid, n, paid in conn.execute(
        select(c.session_id, func.count(), func.count(c.completed_at))
        .where(c.session_id.in_(session_ids)).group_by(c.session_id)
    ):
        out[sid]["checkouts"] = n
        out[sid]["paid"] = paid > 0
    for sid, n in conn.execute(
        select(e.session_id, func.count()).where(e.session_id.in_(session_ids))
        .group_by(e.session_id)
    ):
        out[sid]["errors"] = n
    return out


def sessions_of(
    conn: Connection, person: Person, now: datetime, live_window: float, offset: int, limit: int
) -> SessionsOut:
    """The person's sessions, newest first: ``limit`` of them from ``offset``, and the total."""
    s, c = sessions_t.c, checkouts_t.c
    ids = union(
        select(s.session_id).where(person.matches(sessions_t)),
        select(c.session_id).where(person.matches(checkouts_t)),
    ).subquery()
    found = s.session_id.in_(select(ids.c.session_id))
    total = conn.execute(select(func.count()).select_from(sessions_t).where(found)).scalar_one()
    rows = conn.execute(
        select(sessions_t).where(found)
        .order_by(s.started_at.desc(), s.id.desc()).offset(offset).limit(limit)
    ).all()
    counts = _counts(conn, [row.session_id for row in rows])
    return SessionsOut(
        total=total, offset=offset, limit=limit,
        sessions=[_session_out(row, now, live_window, counts[row.session_id]) for row in rows],
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 1)


def journey(
    conn: Connection, session_id: str, now: datetime, live_window: float
) -> JourneyOut | None:
    """What one session did, in order; None for an unknown session id."""
    s, v, c, e = sessions_t.c, visits_t.c, checkouts_t.c, errors_t.c
    row = conn.execute(select(sessions_t).where(s.session_id == session_id)).first()
    if row is None:
        return None
    end = row.ended_at if not row.is_active and row.ended_at is not None else now
    pages = []
    for visit in conn.execute(
        select(v.page_type, v.page_identifier, v.page_url, v.entered_at, v.exited_at,
               v.duration_seconds, v.is_active)
        .where(v.session_id == session_id).order_by(v.entered_at, v.id)
    ):
        if visit.duration_seconds is not None:
            on_page: float | None = round(float(visit.duration_seconds), 1)
        else:  # the open page: up to now (or to the end of an ended session)
            on_page = _seconds(visit.entered_at, visit.exited_at or end)
        pages.append(JourneyPage(
            page_type=visit.page_type, page_identifier=visit.page_identifier,
            page_url=visit.page_url, entered_at=visit.entered_at, exited_at=visit.exited_at,
            seconds_on_page=on_page,
        ))
    checkout_rows = conn.execute(
        select(checkouts_t).where(c.session_id == session_id).order_by(c.started_at, c.id)
    ).all()
    errors: dict[int | None, list[JourneyAttempt]] = {}
    for err in conn.execute(
        select(errors_t).where(e.session_id == session_id).order_by(e.occurred_at, e.id)
    ):
        errors.setdefault(err.checkout_id, []).append(JourneyAttempt(
            attempt=err.attempt, at=err.occurred_at, error_code=err.error_code,
            error_message=err.error_message, amount=wire_amount(err.amount),
            payment_method=err.payment_method, error_details=err.error_details,
        ))
    checkouts = [
        JourneyCheckout(
            id=ck.id, status=ck.status, started_at=ck.started_at,
            payment_started_at=ck.payment_started_at, completed_at=ck.completed_at,
            total_amount=wire_amount(ck.total_amount), payment_method=ck.payment_method,
            item_count=ck.item_count, checkout_items=ck.checkout_items,
            errors=errors.pop(ck.id, []),
        )
        for ck in checkout_rows
    ]
    if errors:  # payment errors without a checkout (a real client sends them too)
        checkouts.append(JourneyCheckout(
            status="no checkout", errors=[a for group in errors.values() for a in group]
        ))
    counts = _counts(conn, [session_id])[session_id]
    ended = not row.is_active
    return JourneyOut(
        session=_session_out(row, now, live_window, counts),
        browser=describe_user_agent(row.user_agent),
        device=device_kind(row.user_agent),
        user_agent=row.user_agent,
        total_seconds=_seconds(row.started_at, end),
        pages=pages,
        checkouts=checkouts,
        left_on=row.current_page_type if ended else None,
    )

