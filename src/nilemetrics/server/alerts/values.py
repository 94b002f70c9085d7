"""What a rule's metric is now, read from the database (the truth every process shares).

- ``payment_errors``: payment errors in the window;
- ``error_code:<code>``: payment errors with that code in the window;
- ``payment_success_rate``: of the checkouts whose payment reached an outcome in the
  window, the share that paid (as live-metrics' ``paymentSuccessRate`` over the last
  hour); no value when there was no outcome;
- ``live_sessions``: sessions live now (as live-metrics' ``liveSessions``);
- ``page_visits``: page visits entered in the window, counted up to
  :func:`visits_cap` (enough to decide the rule either way: a busy shop's five
  minutes can hold millions of visits, and counting them all every few seconds
  would cost more than the ingestion of them).

Each is answered from an index: errors by ``occurred_at``, checkouts by
``completed_at`` / ``payment_error_at``, live sessions by the partial index of
active sessions, visits by ``ix_page_visits_type_time`` per page type.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, literal, select, text, true

from nilemetrics.protocol import CheckoutStatus
from nilemetrics.server.alerts.rules import Rule
from nilemetrics.server.tables import checkouts_t, errors_t, sessions_t, visits_t

#: Span of the top error codes of a rule without a window (live_sessions).
DEFAULT_CODES_WINDOW = 3600.0

# The page types present, one index probe each (a loose index scan: PostgreSQL has
# no skip scan). Counting visits by type and time then stays on the index
# ``ix_page_visits_type_time`` instead of scanning all of history for a time range.
_PAGE_TYPES = text(
    """
    WITH RECURSIVE types(page_type) AS (
        SELECT min(page_type) FROM page_visits
        UNION ALL
        SELECT (SELECT min(v.page_type) FROM page_visits v WHERE v.page_type > types.page_type)
        FROM types WHERE types.page_type IS NOT NULL
    )
    SELECT page_type FROM types WHERE page_type IS NOT NULL
    """
)


def metric_value(conn: Connection, rule: Rule, now: datetime, live_window: float) -> float | None:
    """The value of ``rule``'s metric at ``now`` (None: no value, e.g. no payment outcome)."""
    if rule.metric == "live_sessions":
        return float(live_sessions(conn, now, live_window))
    assert rule.window is not None
    since = now - timedelta(seconds=rule.window)
    if rule.metric == "payment_errors":
        return float(error_count(conn, since))
    if rule.metric == "payment_success_rate":
        return success_rate(conn, since)
    if rule.metric == "page_visits":
        return float(page_visits(conn, since, visits_cap(rule.threshold)))
    code = rule.error_code
    assert code is not None, rule.metric
    return float(error_count(conn, since, code))


def live_sessions(conn: Connection, now: datetime, live_window: float) -> int:
    """Sessions live now: on a page, active, last event within the live window."""
    s = sessions_t.c
    cutoff = now - timedelta(seconds=live_window)
    count: int = conn.execute(
        select(func.count())
        .select_from(sessions_t)
        .where(
            (s.is_active == true())
            & (s.last_activity >= cutoff)
            & s.current_page_type.is_not(None)
        )
    ).scalar_one()
    return count


def error_count(conn: Connection, since: datetime, code: str | None = None) -> int:
    """Payment errors since ``since`` (with ``code`` only, if given)."""
    e = errors_t.c
    where = e.occurred_at >= since
    if code is not None:
        where &= e.error_code == code
    count: int = conn.execute(
        select(func.count()).select_from(errors_t).where(where)
    ).scalar_one()
    return count


def success_rate(conn: Connection, since: datetime) -> float | None:
    """Share of payment outcomes since ``since`` that paid; None without any outcome."""
    c = checkouts_t.c
    successes = conn.execute(
        select(func.count()).select_from(checkouts_t).where(c.completed_at >= since)
    ).scalar_one()
    failures = conn.execute(
        select(func.count())
        .select_from(checkouts_t)
        .where((c.status == CheckoutStatus.FAILED.value) & (c.payment_error_at >= since))
    ).scalar_one()
    outcomes = successes + failures
    return round(successes / outcomes, 4) if outcomes else None


def visits_cap(threshold: float) -> int:
    """Most page visits a ``page_visits`` rule counts: twice its threshold, at least 10,000."""
    return max(10_000, int(threshold * 2) + 1)


def page_visits(conn: Connection, since: datetime, cap: int | None = None) -> int:
    """Page visits entered since ``since`` (at most ``cap``)."""
    types = list(conn.execute(_PAGE_TYPES).scalars())
    if not types:
        return 0
    v = visits_t.c
    rows = select(literal(1)).where(v.page_type.in_(types) & (v.entered_at >= since))
    if cap is not None:
        rows = rows.limit(cap)
    count: int = conn.execute(
        select(func.count()).select_from(rows.subquery())
    ).scalar_one()
    return count


def codes_window(rule: Rule) -> float:
    """Seconds back over which a notification lists the top error codes."""
    return rule.window if rule.window is not None else DEFAULT_CODES_WINDOW


def top_error_codes(conn: Connection, since: datetime, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent error codes since ``since``: ``[(code, count)]``, most first."""
    e = errors_t.c
    code = func.coalesce(e.error_code, "(none)")
    rows = conn.execute(
        select(code, func.count())
        .where(e.occurred_at >= since)
        .group_by(code)
        .order_by(func.count().desc(), code)
        .limit(limit)
    ).all()
    return [(str(name), int(n)) for name, n in rows]


def recent_error_ids(conn: Connection, since: datetime, code: str | None,
                     limit: int = 10) -> list[int]:
    """Ids of the latest payment errors since ``since`` (whose contacts a rule may list)."""
    e = errors_t.c
    where = e.occurred_at >= since
    if code is not None:
        where &= e.error_code == code
    return [
        int(row_id) for row_id in conn.execute(
            select(e.id).where(where).order_by(e.occurred_at.desc(), e.id.desc()).limit(limit)
        ).scalars()
    ]


def contacts_of_errors(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    """Code, email, phone and IP of the payment errors ``ids`` still stored, newest first.

    Read when a notification is sent, never stored with it: a person erased
    since (``forget``) is simply not there any more.
    """
    if not ids:
        return []
    e, c, s = errors_t.c, checkouts_t.c, sessions_t.c
    rows = conn.execute(
        select(
            e.id, e.error_code, e.ip_address, e.occurred_at,
            func.coalesce(c.email, s.email).label("email"),
            func.coalesce(c.phone, s.phone).label("phone"),
        )
        .select_from(
            errors_t.outerjoin(checkouts_t, c.id == e.checkout_id).outerjoin(
                sessions_t, s.session_id == e.session_id
            )
        )
        .where(e.id.in_(ids))
        .order_by(e.occurred_at.desc(), e.id.desc())
    ).all()
    return [
        {"code": row.error_code, "email": row.email, "phone": row.phone,
         "ip": row.ip_address, "at": row.occurred_at}
        for row in rows
    ]
