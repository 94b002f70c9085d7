"""Session analytics over a period: the queries behind ``nilemetrics report``.

Each function takes a Connection and the period (aware datetimes, ``since``
inclusive, ``until`` exclusive) and returns JSON-ready dicts with the wire's
camelCase keys, so the CLI renders them and an endpoint can return them as they
are. Sessions count when active in the period, checkouts when started in it,
page visits and payment errors when they happened in it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, distinct, exists, func, or_, select, true

from nilemetrics.protocol import IDENTIFIED_PAGE_TYPES, PageType, wire_time
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t

ZERO = Decimal("0.00")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def page_types(conn: Connection) -> list[str]:
    """Every page type stored, known or not, by seeks on ``ix_page_visits_type_time``
    (one per type, no scan)."""
    v = visits_t.c
    found: list[str] = []
    while True:
        query = select(func.min(v.page_type))
        if found:
            query = query.where(v.page_type > found[-1])
        page_type = conn.execute(query).scalar_one()
        if page_type is None:
            return found
        found.append(page_type)


def time_on_page(conn: Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Average time on page per page type, and per category and offer (closed visits).

    One range scan per page type over ``ix_page_visits_type_time``: no sort of the
    period's visits, and the cost follows the period, not history. On SQLite the
    index covers the durations; on PostgreSQL they are read from the rows (no index
    names the duration there, so that closing a visit is a HOT update: migration 0008).
    """
    v = visits_t.c
    window = (v.entered_at >= since) & (v.entered_at < until) & v.duration_seconds.is_not(None)
    by_type: list[dict[str, Any]] = []
    by_identifier: dict[str, list[dict[str, Any]]] = {
        kind.value: [] for kind in IDENTIFIED_PAGE_TYPES
    }
    for page_type in page_types(conn):
        if page_type in IDENTIFIED_PAGE_TYPES:
            rows = conn.execute(
                select(v.page_identifier, func.count(), func.sum(v.duration_seconds))
                .where((v.page_type == page_type) & window)
                .group_by(v.page_identifier)
            ).all()
            entries = [
                {"identifier": ident, "visits": n, "avgSeconds": round(float(total) / n, 2)}
                for ident, n, total in rows
            ]
            entries.sort(key=lambda row: (-row["visits"], str(row["identifier"])))
            by_identifier[page_type] = entries
            visits = sum(n for _ident, n, _total in rows)
            seconds = sum(float(total) for _ident, _n, total in rows)
        else:
            visits, total = conn.execute(
                select(func.count(), func.sum(v.duration_seconds)).where(
                    (v.page_type == page_type) & window
                )
            ).one()
            seconds = float(total or 0.0)
        if visits:
            by_type.append(
                {"pageType": page_type, "visits": visits,
                 "avgSeconds": round(seconds / visits, 2)}
            )
    by_type.sort(key=lambda row: (-row["visits"], row["pageType"]))
    return {
        "byPageType": by_type,
        "byCategory": by_identifier[PageType.CATEGORY.value],
        "byOffer": by_identifier[PageType.OFFER.value],
    }


def funnel(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Sessions active in the period → with a checkout → reached payment → paid."""
    s, c = sessions_t.c, checkouts_t.c
    # Live sessions by the live index, ended ones by ended_at (their last activity).
    active = or_(
        (s.is_active == true()) & (s.last_activity >= since), s.ended_at >= since
    ) & (s.started_at < until)
    sessions = conn.execute(select(func.count()).select_from(sessions_t).where(active)).scalar_one()
    reached_payment = (
        c.payment_started_at.is_not(None)
        | c.payment_error_at.is_not(None)
        | c.completed_at.is_not(None)
    )
    checkout, payment, success = conn.execute(
        select(
            func.count(distinct(c.session_id)),
            func.count(distinct(case((reached_payment, c.session_id)))),
            func.count(distinct(case((c.completed_at.is_not(None), c.session_id)))),
        )
        .select_from(checkouts_t.join(sessions_t, s.session_id == c.session_id))
        .where(active)
    ).one()
    steps: list[dict[str, Any]] = []
    previous: int | None = None
    for name, count in (
        ("sessions", sessions),
        ("checkout", checkout),
        ("payment", payment),
        ("success", success),
    ):
        drop = None if previous is None else previous - count
        steps.append(
            {
                "step": name,
                "sessions": count,
                "dropOff": drop,
                "dropOffRate": None if previous is None else _rate(previous - count, previous),
                "conversion": _rate(count, sessions),
            }
        )
        previous = count
    return steps


def abandonment(
    conn: Connection, since: datetime, until: datetime, limit: int = 10
) -> list[dict[str, Any]]:
    """Where checkouts were abandoned: the last page of each session that ended in the
    period having started a checkout and never paid, most common first.

    Sessions that never reached a checkout are visitors leaving, not abandonment.
    """
    s, c = sessions_t.c, checkouts_t.c
    checked_out = exists().where(c.session_id == s.session_id)
    paid = exists().where((c.session_id == s.session_id) & c.completed_at.is_not(None))
    rows = conn.execute(
        select(s.current_page_type, s.current_page_identifier, func.count())
        .where(
            and_(
                s.is_active.is_(False),
                s.ended_at >= since,
                s.ended_at < until,
                checked_out,
                ~paid,
            )
        )
        .group_by(s.current_page_type, s.current_page_identifier)
        .order_by(func.count().desc(), s.current_page_type, s.current_page_identifier)
    ).all()
    total = sum(n for *_rest, n in rows)
    return [
        {
            "pageType": page_type or "(none)",
            "pageIdentifier": ident,
            "sessions": n,
            "share": _rate(n, total),
        }
        for page_type, ident, n in rows[:limit]
    ]


def error_codes(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Payment error codes, most frequent first, with the checkout amounts they put at stake.

    A checkout failing three times with one code counts its amount once for it;
    ``recovered`` is the part of that amount whose checkout was paid in the end.
    """
    e, c = errors_t.c, checkouts_t.c
    rows = conn.execute(
        select(
            e.error_code,
            e.checkout_id,
            func.count(),
            func.min(e.amount),
            func.max(case((c.completed_at.is_not(None), 1), else_=0)),
        )
        .select_from(errors_t.outerjoin(checkouts_t, c.id == e.checkout_id))
        .where((e.occurred_at >= since) & (e.occurred_at < until))
        .group_by(e.error_code, e.checkout_id)
    ).all()
    codes: dict[str, dict[str, Any]] = {}
    for code, _checkout_id, n, amount, paid in rows:
        entry = codes.setdefault(
            code or "(none)",
            {"errorCode": code or "(none)", "errors": 0, "checkouts": 0,
             "amountAtStake": ZERO, "amountRecovered": ZERO},
        )
        entry["errors"] += n
        entry["checkouts"] += 1
        value = Decimal(str(amount)) if amount is not None else ZERO
        entry["amountAtStake"] += value
        if paid:
            entry["amountRecovered"] += value
    ranked = sorted(codes.values(), key=lambda d: (-d["errors"], -d["amountAtStake"],
                                                   d["errorCode"]))
    for entry in ranked:
        entry["amountAtStake"] = f"{entry['amountAtStake']:.2f}"
        entry["amountRecovered"] = f"{entry['amountRecovered']:.2f}"
    return ranked


def retries(conn: Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Of the checkouts that failed at least once: how many paid, after how many failures."""
    c = checkouts_t.c
    rows = conn.execute(
        select(
            c.error_count,
            func.count(),
            func.sum(case((c.completed_at.is_not(None), 1), else_=0)),
        )
        .where((c.started_at >= since) & (c.started_at < until) & (c.error_count > 0))
        .group_by(c.error_count)
        .order_by(c.error_count)
    ).all()
    failed = sum(n for _count, n, _paid in rows)
    paid_total = sum(int(paid or 0) for *_rest, paid in rows)
    return {
        "failedCheckouts": failed,
        "succeededAfterRetry": paid_total,
        "succeededAfterRetryRate": _rate(paid_total, failed),
        "byFailures": [
            {
                "failures": count,
                "checkouts": n,
                "succeeded": int(paid or 0),
                "shareOfFailedCheckouts": _rate(int(paid or 0), failed),
            }
            for count, n, paid in rows
        ],
    }


def payment_success(conn: Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Success rate per checkout (of those reaching an outcome) and per payment attempt."""
    c, e = checkouts_t.c, errors_t.c
    in_window = (c.started_at >= since) & (c.started_at < until)
    paid_flag = case((c.completed_at.is_not(None), 1), else_=0)
    outcome_flag = case(((c.completed_at.is_not(None)) | (c.error_count > 0), 1), else_=0)
    checkouts, outcomes, paid = conn.execute(
        select(func.count(), func.sum(outcome_flag), func.sum(paid_flag)).where(in_window)
    ).one()
    errors = conn.execute(
        select(func.count()).select_from(errors_t).where(
            (e.occurred_at >= since) & (e.occurred_at < until)
        )
    ).scalar_one()
    outcomes, paid = int(outcomes or 0), int(paid or 0)
    return {
        "checkouts": checkouts,
        "checkoutsWithOutcome": outcomes,
        "paid": paid,
        "successRate": _rate(paid, outcomes),
        "paymentAttempts": paid + errors,
        "attemptSuccessRate": _rate(paid, paid + errors),
    }


def custom_events(conn: Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Custom events per name in the period, most first: how many, from how many sessions."""
    e = events_t.c
    count = func.count().label("n")
    rows = conn.execute(
        select(e.name, count, func.count(distinct(e.session_id)))
        .where(e.name.is_not(None) & (e.occurred_at >= since) & (e.occurred_at < until))
        .group_by(e.name)
        .order_by(count.desc(), e.name)
    ).all()
    return [{"name": name, "events": n, "sessions": sessions} for name, n, sessions in rows]


def build_report(conn: Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Every analysis of the report, JSON-ready."""
    return {
        "since": wire_time(since),
        "until": wire_time(until),
        "timeOnPage": time_on_page(conn, since, until),
        "funnel": funnel(conn, since, until),
        "abandonment": abandonment(conn, since, until),
        "paymentErrors": error_codes(conn, since, until),
        "retries": retries(conn, since, until),
        "paymentSuccess": payment_success(conn, since, until),
        "customEvents": custom_events(conn, since, until),
    }
