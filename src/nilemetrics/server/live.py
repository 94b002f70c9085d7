"""Live numbers and payment-error rows, read from the current-page columns.

Live counts use a partial index of the active sessions (SQLite:
``ix_user_sessions_live``, by last activity; PostgreSQL: ``ix_user_sessions_active``,
by session id, so that the per-event session update stays HOT), so their cost
follows the number of live sessions, not history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, case, delete, false, func, insert, literal, select, true

from nilemetrics.protocol.names import CheckoutStatus, PageType, Platform
from nilemetrics.protocol.pushed import (
    LiveMetrics,
    PageSessionOut,
    PageSessionsOut,
    PaymentErrorRow,
)
from nilemetrics.server.alerts.episodes import firing_alerts
from nilemetrics.server.tables import (
    checkouts_t,
    errors_t,
    events_t,
    latest_visit,
    latest_visit_id,
    live_metrics_t,
    sessions_t,
    visits_t,
)

HOUR = timedelta(hours=1)
#: How far back ``customEvents`` counts.
CUSTOM_EVENTS_WINDOW = timedelta(minutes=5)
#: Most names ``customEvents`` lists (names come from browsers).
CUSTOM_EVENTS_LISTED = 50

# Page types with a single counter, and the JSON key each is reported under.
_SCALAR_KEYS = {
    PageType.HOMEPAGE.value: "homepage",
    PageType.PRODUCT.value: "product",
    PageType.SEARCH.value: "search",
    PageType.CHECKOUT.value: "checkout",
    PageType.PAYMENT.value: "payment",
    PageType.PAYMENT_ERROR.value: "paymentError",
    PageType.OTHER.value: "other",
}


def live_counts(conn: Connection, now: datetime, live_window: float) -> dict[str, Any]:
    """Live sessions per page; every live session counts on exactly one page.

    A session is live once it has reported a page (or a checkout or payment event,
    which puts it on the checkout or payment page) and while its last event is
    within the live window. A session that only started is on no page: clients
    race and start two, and only one of them goes on to report pages.

    ``pages`` has every page type, known or not, and adds up to ``liveSessions``;
    the known types also have keys of their own, categories and offers per id.
    """
    s = sessions_t.c
    cutoff = now - timedelta(seconds=live_window)
    # Sessions that never said their platform (browsers, the shop's client) are web.
    platform = func.coalesce(s.platform, literal(Platform.WEB.value))
    rows = conn.execute(
        select(s.current_page_type, s.current_page_identifier, platform, func.count())
        .where(
            (s.is_active == true())
            & (s.last_activity >= cutoff)
            & s.current_page_type.is_not(None)
        )
        .group_by(s.current_page_type, s.current_page_identifier, platform)
    ).all()
    counts: dict[str, Any] = dict.fromkeys(_SCALAR_KEYS.values(), 0)
    categories: dict[str, int] = {}
    offers: dict[str, int] = {}
    pages: dict[str, int] = {}
    platforms = {kind.value: 0 for kind in Platform}
    total = 0
    for page_type, identifier, on, n in rows:
        total += n
        platforms[on if on in platforms else Platform.OTHER.value] += n
        pages[page_type] = pages.get(page_type, 0) + n
        if page_type == PageType.CATEGORY.value:
            categories[identifier or ""] = categories.get(identifier or "", 0) + n
        elif page_type == PageType.OFFER.value:
            offers[identifier or ""] = offers.get(identifier or "", 0) + n
        elif page_type in _SCALAR_KEYS:
            counts[_SCALAR_KEYS[page_type]] += n
    counts["categories"] = _ranked(categories)
    counts["offers"] = _ranked(offers)
    counts["pages"] = _ranked(pages)
    counts["platforms"] = platforms
    counts["liveSessions"] = total
    return counts


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def hour_figures(conn: Connection, now: datetime) -> dict[str, Any]:
    """Payment figures of the last hour.

    ``paymentSuccessRate`` is, of the checkouts whose payment reached an outcome
    in the last hour, the share that paid (a checkout that failed and then paid
    counts once, as a success); ``None`` when there was no outcome.
    """
    since = now - HOUR
    c, e = checkouts_t.c, errors_t.c
    checkouts = conn.execute(
        select(func.count()).select_from(checkouts_t).where(c.started_at >= since)
    ).scalar_one()
    errors = conn.execute(
        select(func.count()).select_from(errors_t).where(e.occurred_at >= since)
    ).scalar_one()
    successes = conn.execute(
        select(func.count()).select_from(checkouts_t).where(c.completed_at >= since)
    ).scalar_one()
    failures = conn.execute(
        select(func.count())
        .select_from(checkouts_t)
        .where((c.status == CheckoutStatus.FAILED.value) & (c.payment_error_at >= since))
    ).scalar_one()
    outcomes = successes + failures
    return {
        "checkoutsLastHour": checkouts,
        "paymentErrorsLastHour": errors,
        "paymentSuccessesLastHour": successes,
        "paymentFailuresLastHour": failures,
        "paymentSuccessRate": round(successes / outcomes, 4) if outcomes else None,
        **funnel_figures(conn, now),
    }


def funnel_figures(conn: Connection, now: datetime) -> dict[str, int]:
    """The last hour's conversion funnel, counted in sessions of one cohort.

    ``sessionsLastHour``: sessions that reported a page and were active in the
    last hour; ``checkoutSessionsLastHour``: those of them that started a
    checkout in the last hour; ``paymentSessionsLastHour``: those of these whose
    checkout reached payment (a payment start, error or success);
    ``paidSessionsLastHour``: those whose checkout was paid. Each step is a
    subset of the one before, so the numbers never increase along the funnel.
    """
    since = now - HOUR
    s, c = sessions_t.c, checkouts_t.c
    # Active sessions through the partial index of active sessions (spelled
    # ``is_active == true()`` as that index needs), ended ones through ended_at.
    active = conn.execute(
        select(func.count())
        .select_from(sessions_t)
        .where(
            (s.is_active == true())
            & (s.last_activity >= since)
            & s.current_page_type.is_not(None)
        )
    ).scalar_one()
    ended = conn.execute(
        select(func.count())
        .select_from(sessions_t)
        .where(
            (s.ended_at >= since)
            & (s.is_active == false())
            & s.current_page_type.is_not(None)
        )
    ).scalar_one()
    reached_payment = (
        c.payment_started_at.is_not(None)
        | c.payment_error_at.is_not(None)
        | c.completed_at.is_not(None)
    )
    # One pass over the hour's checkouts (index on started_at), counted per session.
    checkout_sessions, payment_sessions, paid_sessions = conn.execute(
        select(
            func.count(func.distinct(c.session_id)),
            func.count(func.distinct(case((reached_payment, c.session_id)))),
            func.count(func.distinct(case((c.completed_at.is_not(None), c.session_id)))),
        ).where(c.started_at >= since)
    ).one()
    return {
        # A checkout's session was active when the checkout started; max() only
        # guards against rows written by hand with inconsistent times.
        "sessionsLastHour": max(active + ended, checkout_sessions),
        "checkoutSessionsLastHour": checkout_sessions,
        "paymentSessionsLastHour": payment_sessions,
        "paidSessionsLastHour": paid_sessions,
    }


def custom_event_counts(conn: Connection, now: datetime) -> dict[str, int]:
    """Custom events per name in the last 5 minutes, most first (at most 50 names).

    A range scan of the partial index of named events by time: its cost follows the
    custom events of the window, not the log.
    """
    e = events_t.c
    count = func.count().label("n")
    rows = conn.execute(
        select(e.name, count)
        .where(e.name.is_not(None) & (e.occurred_at >= now - CUSTOM_EVENTS_WINDOW))
        .group_by(e.name)
        .order_by(count.desc(), e.name)
        .limit(CUSTOM_EVENTS_LISTED)
    ).all()
    return {str(name): int(n) for name, n in rows}


def snapshot(conn: Connection, now: datetime, live_window: float) -> LiveMetrics:
    """The body of GET ``/live-metrics`` and of ``metrics-update`` frames."""
    body = live_counts(conn, now, live_window)
    body.update(hour_figures(conn, now))
    body["customEvents"] = custom_event_counts(conn, now)
    body["liveWindowSeconds"] = live_window
    body["alerts"] = firing_alerts(conn)
    body["lastUpdated"] = now
    return LiveMetrics.model_validate(body)


def store_snapshot(conn: Connection, metrics: LiveMetrics, now: datetime) -> None:
    """Replace the ``live_metrics`` rows with this snapshot (for other tools to read)."""
    body = metrics.model_dump(by_alias=True)
    rows: list[dict[str, Any]] = [
        {"metric_type": key, "metric_identifier": "", "active_users_count": body[key]}
        for key in (*_SCALAR_KEYS.values(), "liveSessions")
    ]
    for kind, key in (("category", "categories"), ("offer", "offers"), ("page", "pages"),
                      ("event", "customEvents"), ("platform", "platforms")):
        rows.extend(
            {"metric_type": kind, "metric_identifier": ident, "active_users_count": n}
            for ident, n in body[key].items()
        )
    for row in rows:
        row["last_updated"] = now
    conn.execute(delete(live_metrics_t))
    conn.execute(insert(live_metrics_t), rows)


def wire_amount(amount: Decimal | None) -> float | None:
    """An amount as the wire carries it: a JSON number rounded to cents.

    The shop's seller dashboard formats amounts with ``toFixed``, which a string
    does not have; storage keeps the exact decimal.
    """
    return None if amount is None else float(amount.quantize(Decimal("0.01")))


def payment_error_rows(
    conn: Connection, since: datetime, limit: int, until: datetime | None = None
) -> list[PaymentErrorRow]:
    """Payment errors since ``since`` (and before ``until``), newest first, with their
    checkout's context."""
    e, c, s = errors_t.c, checkouts_t.c, sessions_t.c
    stmt = (
        select(
            e.id, e.session_id, e.attempt, e.error_code, e.error_message, e.error_details,
            e.amount, e.payment_method, e.ip_address, e.user_agent, e.occurred_at,
            c.checkout_items, c.item_count, c.total_amount, c.status, c.email.label("c_email"),
            c.phone.label("c_phone"), s.email.label("s_email"), s.phone.label("s_phone"),
        )
        .select_from(
            errors_t.outerjoin(checkouts_t, c.id == e.checkout_id).outerjoin(
                sessions_t, s.session_id == e.session_id
            )
        )
        .where(e.occurred_at >= since)
        .order_by(e.occurred_at.desc(), e.id.desc())
        .limit(limit)
    )
    if until is not None:
        stmt = stmt.where(e.occurred_at < until)
    out = []
    for row in conn.execute(stmt):
        amount: Decimal | None = row.amount if row.amount is not None else row.total_amount
        out.append(
            PaymentErrorRow(
                id=row.id,
                session_id=row.session_id,
                attempt=row.attempt,
                email=row.c_email or row.s_email,
                phone=row.c_phone or row.s_phone,
                checkout_items=row.checkout_items,
                item_count=row.item_count,
                total_amount=wire_amount(amount),
                payment_method=row.payment_method,
                payment_error_at=row.occurred_at,
                error_code=row.error_code,
                error_message=row.error_message,
                error_details=row.error_details,
                ip_address=row.ip_address,
                user_agent=row.user_agent,
                checkout_status=row.status,
            )
        )
    return out


def live_sessions_on_pages(
    conn: Connection,
    now: datetime,
    live_window: float,
    page_types: list[str],
    identifier: str | None,
    limit: int,
    offset: int = 0,
) -> PageSessionsOut:
    """The live sessions whose current page is one of ``page_types`` (and ``identifier``).

    Each with its current page, since when it is there (its open page visit),
    its email if known and the page it came from. Longest on the page first.
    The sessions are found like the live counts (the partial index of active
    sessions), their open visits as their latest ones, their visits by the session id.
    """
    s = sessions_t.c
    cutoff = now - timedelta(seconds=live_window)
    where = (
        (s.is_active == true())
        & (s.last_activity >= cutoff)
        & s.current_page_type.in_(page_types)
    )
    if identifier is not None:
        where &= s.current_page_identifier == identifier
    total = conn.execute(select(func.count()).select_from(sessions_t).where(where)).scalar_one()
    # The open visit (its latest, if open), if it is of the current page (a checkout
    # event moves a session to the checkout page without a page visit). On PostgreSQL
    # a LATERAL probe: joined on the subquery's result, the planner may hash all open
    # visits instead (see ``tables.latest_visit``).
    open_visit: Any
    if conn.dialect.name == "postgresql":
        open_visit = latest_visit(
            s.session_id, "id", "entered_at", "page_url", "page_type", "is_active"
        ).lateral("open_visit")
        o = open_visit.c
        on = o.is_active == true()
    else:
        open_visit = visits_t.alias("open_visit")
        o = open_visit.c
        on = (o.id == latest_visit_id(s.session_id)) & (o.is_active == true())
    joined = sessions_t.outerjoin(open_visit, on & (o.page_type == s.current_page_type))
    before = visits_t.alias("before")
    b = before.c
    earlier = (
        (b.session_id == s.session_id)
        & (b.id != func.coalesce(o.id, literal(-1)))
        & (b.entered_at <= func.coalesce(o.entered_at, s.last_activity))
    )
    latest_first = (b.entered_at.desc(), b.id.desc())
    previous_type = (
        select(b.page_type).where(earlier).order_by(*latest_first).limit(1).scalar_subquery()
    )
    previous_ident = (
        select(b.page_identifier).where(earlier).order_by(*latest_first).limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(
            s.session_id, s.email, s.current_page_type, s.current_page_identifier,
            s.last_activity, o.entered_at, o.page_url,
            previous_type.label("previous_type"), previous_ident.label("previous_ident"),
        )
        .select_from(joined)
        .where(where)
        .order_by(func.coalesce(o.entered_at, s.last_activity), s.session_id)
        .offset(offset)
        .limit(limit)
    ).all()
    sessions = []
    for row in rows:
        entered: datetime | None = row.entered_at
        sessions.append(PageSessionOut(
            session_id=row.session_id,
            page_type=row.current_page_type,
            page_identifier=row.current_page_identifier,
            page_url=row.page_url,
            entered_at=entered,
            seconds_on_page=None if entered is None else round(
                max((now - entered).total_seconds(), 0.0), 1),
            last_activity=row.last_activity,
            email=row.email,
            previous_page_type=row.previous_type,
            previous_page_identifier=row.previous_ident,
        ))
    return PageSessionsOut(total=total, sessions=sessions)
