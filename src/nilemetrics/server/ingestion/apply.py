"""Applying a batch of tracking events in one transaction (the group commit's body).

The event log decides which events are new (``eventlog``); their session and
page-visit changes are planned in memory (``plan``) and written with a few
multi-row statements (``statements``); checkout and payment events, rarer and
one checkout each, go through the state machine (``checkout``) in arrival order.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from nilemetrics.protocol.bodies import PaymentErrorIn
from nilemetrics.protocol.names import CheckoutStatus, EventType
from nilemetrics.server.ingestion.checkout import Checkout, step
from nilemetrics.server.ingestion.eventlog import log_events
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.ingestion.plan import Contact, Plan, SessionState, plan_batch
from nilemetrics.server.ingestion.statements import (
    SessionContact,
    SessionInsert,
    SessionPlatform,
    SessionStateChange,
    SessionTouch,
    Statements,
    VisitClose,
    VisitInsert,
    Writes,
    statements,
)
from nilemetrics.server.notify import NOTIFY_CHANNEL, NOTIFY_SQL
from nilemetrics.server.tables import checkouts_t, errors_t


def apply_batch(
    conn: Connection, events: list[TrackedEvent], *, notify: bool = False
) -> BatchOutcome:
    """Apply ``events`` in order inside the caller's transaction.

    ``notify`` (PostgreSQL): tell the other server processes, at commit, that the
    batch changed something. The writes that need no answer (nearly all of a batch)
    go out together at the end (see :class:`Writes`), the notification with them.
    """
    writes = statements(conn).writes(conn)
    applied = log_events(conn, events, writes)
    live = [event for event, ok in zip(events, applied, strict=True) if ok]
    # A session/start names a known session only with a client-chosen id (the tracker,
    # identify()); ids the server just made need no lookup.
    wanted = list(dict.fromkeys(
        e.session_id for e in live
        if e.kind != EventType.SESSION_START or getattr(e.body, "session_id", None) is not None
    ))
    plan = plan_batch(live, load_sessions(conn, wanted) if wanted else {})
    outcome = BatchOutcome(applied=applied)
    outcome.payment_errors = _write_checkouts(conn, plan)
    _write_sessions(writes, plan)
    if notify and outcome.changed:
        writes.execute(NOTIFY_SQL, (NOTIFY_CHANNEL, notify_payload(outcome)))
    writes.send()
    return outcome


def load_sessions(conn: Connection, session_ids: list[str]) -> dict[str, SessionState]:
    """The known sessions among ``session_ids``, with their open visit (its id and start)."""
    sql = statements(conn)
    states: dict[str, SessionState] = {}
    for row in sql.load_sessions(conn, session_ids):
        started_at, last_activity = sql.read_ts(row.started_at), sql.read_ts(row.last_activity)
        if started_at is None or last_activity is None:
            raise ValueError(f"session {row.session_id} has no start or last activity")
        states[row.session_id] = SessionState(
            exists=True,
            is_active=bool(row.is_active),
            started_at=started_at,
            last_activity=last_activity,
            ended_at=sql.read_ts(row.ended_at),
            current_page_type=row.current_page_type,
            current_page_identifier=row.current_page_identifier,
            user_id=row.user_id,
            email=row.email,
            phone=row.phone,
            ip_address=row.ip_address,
            user_agent=row.user_agent,
            db_open_visit_id=row.open_visit_id,
            db_open_visit_at=sql.read_ts(row.open_visit_entered_at),
        )
    return states


def notify_payload(outcome: BatchOutcome) -> str:
    """What a batch's NOTIFY says: ``errors`` when it recorded a payment error."""
    return "errors" if outcome.payment_errors else "metrics"


def _write_sessions(writes: Writes, plan: Plan) -> None:
    sql: Statements = writes.statements
    ts, boolean = sql.ts, sql.boolean
    new_rows: list[tuple[object, ...]] = []
    touches: list[tuple[object, ...]] = []
    contacts: list[tuple[object, ...]] = []
    state_changes: list[tuple[object, ...]] = []
    platforms: list[tuple[object, ...]] = []
    for sid, st in plan.states.items():
        if not st.dirty:
            continue
        if not st.exists:
            new_rows.append(SessionInsert(
                session_id=sid, user_id=st.user_id, email=st.email, phone=st.phone,
                ip_address=st.ip_address, user_agent=st.user_agent,
                is_active=boolean(st.is_active), started_at=ts(st.started_at),
                last_activity=ts(st.last_activity), ended_at=ts(st.ended_at),
                current_page_type=st.current_page_type,
                current_page_identifier=st.current_page_identifier,
                platform=st.platform, app_version=st.app_version,
            ))
            continue
        touches.append(SessionTouch(
            session_id=sid, last_activity=ts(st.last_activity),
            current_page_type=st.current_page_type,
            current_page_identifier=st.current_page_identifier,
        ))
        if st.state_dirty:
            state_changes.append(SessionStateChange(
                session_id=sid, is_active=boolean(st.is_active), ended_at=ts(st.ended_at)
            ))
        if st.platform_dirty:
            platforms.append(SessionPlatform(
                session_id=sid, platform=st.platform, app_version=st.app_version
            ))
        if st.contact_dirty:
            # Separate and rare: assigning indexed columns rewrites their index
            # entries even when the value stays the same.
            contacts.append(SessionContact(
                session_id=sid, user_id=st.user_id, email=st.email, phone=st.phone,
                ip_address=st.ip_address, user_agent=st.user_agent,
            ))
    writes.bulk(sql.insert_sessions, new_rows)
    writes.bulk(sql.touch_sessions, touches)
    writes.each(sql.change_session_state, state_changes)
    writes.each(sql.change_session_contact, contacts)
    writes.each(sql.change_session_platform, platforms)
    writes.bulk(sql.close_visits, [
        VisitClose(id=c.visit_id, exited_at=ts(c.exited_at),
                   duration_seconds=c.duration_seconds)
        for c in plan.visit_closes
    ])
    writes.bulk(sql.insert_visits, [
        VisitInsert(
            session_id=v.session_id, page_type=v.page_type, page_identifier=v.page_identifier,
            page_url=v.page_url, entered_at=ts(v.entered_at), exited_at=ts(v.exited_at),
            duration_seconds=v.duration_seconds, is_active=boolean(v.is_active),
        )
        for v in plan.visit_inserts
    ])


def _write_checkouts(conn: Connection, plan: Plan) -> int:
    """Run the batch's checkout events through the state machine; count payment errors."""
    latest: dict[str, Checkout | None] = {}
    errors = 0
    for event, contact in plan.checkout_events:
        sid = event.session_id
        if sid not in latest:
            latest[sid] = _latest_checkout(conn, sid)
        result = step(latest[sid], event.kind, event.body, event.at)
        checkout = latest[sid] = result.checkout
        c = checkouts_t.c
        if result.abandon is not None:
            conn.execute(
                update(checkouts_t)
                .where(c.id == result.abandon)
                .values(status=CheckoutStatus.ABANDONED.value, updated_at=event.at)
            )
        if result.insert is not None and checkout is not None:
            checkout.id = _insert_checkout(conn, sid, contact, result.insert)
        if result.update and checkout is not None and checkout.id is not None:
            conn.execute(update(checkouts_t).where(c.id == checkout.id).values(**result.update))
        if result.error_attempt is not None and checkout is not None:
            _record_error(conn, event, checkout, result.error_attempt)
            errors += 1
    return errors


def _latest_checkout(conn: Connection, session_id: str) -> Checkout | None:
    c = checkouts_t.c
    stmt = (
        select(c.id, c.status, c.total_amount, c.payment_method, c.error_count, c.item_count)
        .where(c.session_id == session_id)
        .order_by(c.id.desc())
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return Checkout(row.id, row.status, row.total_amount, row.payment_method, row.error_count,
                    row.item_count)


def _insert_checkout(
    conn: Connection, session_id: str, contact: Contact, values: dict[str, object]
) -> int:
    new_id: int = conn.execute(
        insert(checkouts_t)
        .values(session_id=session_id, user_id=contact.user_id, email=contact.email,
                phone=contact.phone, **values)
        .returning(checkouts_t.c.id)
    ).scalar_one()
    return new_id


def _record_error(conn: Connection, event: TrackedEvent, checkout: Checkout, attempt: int) -> None:
    body = event.body
    if not isinstance(body, PaymentErrorIn):
        raise TypeError(f"a payment error event with a {type(body).__name__} body")
    error = body.normalised()
    conn.execute(
        insert(errors_t).values(
            checkout_id=checkout.id,
            session_id=event.session_id,
            attempt=attempt,
            error_code=error.error_code,
            error_message=error.error_message,
            error_details=error.model_dump(mode="json", by_alias=True, exclude_none=True),
            amount=checkout.total_amount,
            payment_method=checkout.payment_method,
            page_url=error.url,
            ip_address=event.context.ip_address,
            user_agent=event.context.user_agent,
            occurred_at=event.at,
        )
    )
