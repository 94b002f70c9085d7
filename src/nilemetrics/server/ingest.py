"""Applying a batch of tracking events in one transaction (the group commit's body).

Session and page-visit changes, which are nearly all the traffic, are worked out
in memory and written with a few multi-row statements per batch. Checkout
and payment events are rarer and touch one checkout each; they are written in
arrival order as they come.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nilemetrics.ids import uuid7
from nilemetrics.protocol import CheckoutStatus, PageType
from nilemetrics.server.hotpath import hot_sql
from nilemetrics.server.privacy import RequestContext
from nilemetrics.server.schemas import (
    MAX_AMOUNT,
    MAX_CHECKOUT_ITEMS,
    MAX_ITEM_COUNT,
    CheckoutStartIn,
    PageVisitIn,
    PaymentContextIn,
    PaymentErrorIn,
    PaymentStartIn,
    SessionStartIn,
)
from nilemetrics.server.tables import checkouts_t, errors_t, events_t

EventKind = Literal[
    "session-start",
    "session-heartbeat",
    "page-visit",
    "checkout-start",
    "payment-start",
    "payment-error",
    "payment-success",
    "session-end",
]


@dataclass(slots=True)
class TrackedEvent:
    """One validated event, stamped with the server's receive time."""

    kind: EventKind
    session_id: str
    at: datetime
    context: RequestContext
    body: BaseModel
    event_id: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Batches are pickled to the writer process. The default for slots
        # dataclasses looks up dataclasses.fields() per object: plain arguments
        # cut the hand-off's pickling time by about 40%.
        return (
            TrackedEvent,
            (self.kind, self.session_id, self.at, self.context, self.body, self.event_id),
        )


@dataclass(slots=True)
class BatchOutcome:
    """What a committed batch did: per event whether it was applied (or a duplicate)."""

    applied: list[bool]
    payment_errors: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was written besides nothing at all."""
        return any(self.applied)


@dataclass(slots=True)
class _SessionState:
    exists: bool
    is_active: bool
    started_at: datetime
    last_activity: datetime
    ended_at: datetime | None = None
    current_page_type: str | None = None
    current_page_identifier: str | None = None
    user_id: str | None = None
    email: str | None = None
    phone: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    db_open_visit_at: datetime | None = None
    new_visit: dict[str, Any] | None = None
    dirty: bool = False
    contact_dirty: bool = False
    state_dirty: bool = False


@dataclass(slots=True)
class _Checkout:
    id: int
    status: str
    total_amount: Decimal | None
    payment_method: str | None
    error_count: int
    item_count: int | None


@dataclass(slots=True)
class _Plan:
    states: dict[str, _SessionState] = field(default_factory=dict)
    visit_closes: list[dict[str, Any]] = field(default_factory=list)
    visit_inserts: list[dict[str, Any]] = field(default_factory=list)
    checkouts: dict[str, _Checkout | None] = field(default_factory=dict)


def _upsert_dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _payload(event: TrackedEvent) -> dict[str, Any]:
    data = event.body.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"session_id", "event_id"}
    )
    return data


#: Events fully recorded by their own tables (page_visits, user_sessions.last_activity).
#: Without an eventId to remember they are not copied into the event log: they are
#: nearly all the traffic, and a second copy would double the write volume.
_RECORDED_ELSEWHERE = frozenset({"page-visit", "session-heartbeat"})


def _scoped_event_id(session_id: str, event_id: str) -> str:
    """The log key of a session's event whose eventId another session already used."""
    digest = hashlib.sha256(f"{session_id}\n{event_id}".encode()).hexdigest()
    return f"scoped:{digest[:56]}"


def _log_events(conn: Connection, events: list[TrackedEvent]) -> list[bool]:
    """Append events to the log; return, per event, False when it repeats a logged one.

    Every event with an eventId is logged (that is what makes retries idempotent),
    and so is every event not in ``_RECORDED_ELSEWHERE``. An eventId is a repeat
    only within its own session: an eventId another session used is logged under
    a key scoped to this session, so answers never tell whether someone else's
    eventId exists.
    """
    applied = [True] * len(events)
    seen: set[tuple[str, str]] = set()
    client_rows: list[tuple[int, dict[str, Any]]] = []
    server_rows: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.event_id is None and event.kind in _RECORDED_ELSEWHERE:
            continue
        row = {
            "event_type": event.kind,
            "session_id": event.session_id,
            "occurred_at": event.at,
            "payload": _payload(event),
        }
        if event.event_id is None:
            row["event_id"] = uuid7().hex
            server_rows.append(row)
        elif (event.session_id, event.event_id) in seen:
            applied[index] = False
        else:
            seen.add((event.session_id, event.event_id))
            row["event_id"] = event.event_id
            client_rows.append((index, row))
    if client_rows:
        stmt = (
            _upsert_dialect_insert(conn)(events_t)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(events_t.c.event_id, events_t.c.session_id)
        )
        inserted = set(conn.execute(stmt, [row for _, row in client_rows]).tuples())
        taken = [(i, r) for i, r in client_rows if (r["event_id"], r["session_id"]) not in inserted]
        if taken:
            # A list first: dict() of a Result takes it for a mapping (it has keys()).
            owners = dict(list(conn.execute(
                select(events_t.c.event_id, events_t.c.session_id)
                .where(events_t.c.event_id.in_(sorted({r["event_id"] for _, r in taken})))
            ).tuples()))
            foreign = [(i, r) for i, r in taken if owners.get(r["event_id"]) != r["session_id"]]
            for index, row in foreign:
                event_id = events[index].event_id
                assert event_id is not None
                row["event_id"] = _scoped_event_id(events[index].session_id, event_id)
            if foreign:
                inserted |= set(conn.execute(stmt, [row for _, row in foreign]).tuples())
        for index, row in client_rows:
            if (row["event_id"], row["session_id"]) not in inserted:
                applied[index] = False
    if server_rows:
        sql = hot_sql(conn)
        sql.bulk(
            conn,
            sql.insert_events,
            [
                (r["event_id"], r["event_type"], r["session_id"], sql.ts(r["occurred_at"]),
                 sql.json(r["payload"]))
                for r in server_rows
            ],
        )
    return applied


def _load_sessions(conn: Connection, session_ids: list[str]) -> dict[str, _SessionState]:
    sql = hot_sql(conn)
    states: dict[str, _SessionState] = {}
    for row in sql.fetchall(conn, sql.select_sessions(len(session_ids)), tuple(session_ids)):
        (sid, is_active, started_at, last_activity, ended_at, page_type, page_id, user_id,
         email, phone, ip, agent, open_at) = row
        open_visit_at = sql.read_ts(open_at)
        known = states.get(sid)
        if known is not None:
            # Two open visits (should not happen): close from the latest.
            if open_visit_at is not None and (
                known.db_open_visit_at is None or open_visit_at > known.db_open_visit_at
            ):
                known.db_open_visit_at = open_visit_at
            continue
        states[sid] = _SessionState(
            exists=True,
            is_active=bool(is_active),
            started_at=sql.read_ts(started_at),  # type: ignore[arg-type]
            last_activity=sql.read_ts(last_activity),  # type: ignore[arg-type]
            ended_at=sql.read_ts(ended_at),
            current_page_type=page_type,
            current_page_identifier=page_id,
            user_id=user_id,
            email=email,
            phone=phone,
            ip_address=ip,
            user_agent=agent,
            db_open_visit_at=open_visit_at,
        )
    return states


def _touch(state: _SessionState, event: TrackedEvent) -> None:
    state.dirty = True
    if event.at > state.last_activity:
        state.last_activity = event.at
    if not state.is_active:
        # A later event revives a session that ended or timed out.
        state.is_active = True
        state.ended_at = None
        state.state_dirty = True
    ctx = event.context
    if not ctx.anonymous:
        if state.ip_address is None and ctx.ip_address:
            state.ip_address = ctx.ip_address
            state.contact_dirty = True
        if state.user_agent is None and ctx.user_agent:
            state.user_agent = ctx.user_agent
            state.contact_dirty = True


def _close_visit(plan: _Plan, session_id: str, state: _SessionState, at: datetime) -> None:
    if state.new_visit is not None:
        visit = state.new_visit
        visit["exited_at"] = at
        visit["duration_seconds"] = max(0.0, (at - visit["entered_at"]).total_seconds())
        visit["is_active"] = False
        state.new_visit = None
    elif state.db_open_visit_at is not None:
        plan.visit_closes.append(
            {
                "b_session_id": session_id,
                "exited_at": at,
                "duration_seconds": max(0.0, (at - state.db_open_visit_at).total_seconds()),
            }
        )
        state.db_open_visit_at = None


def _new_state(event: TrackedEvent) -> _SessionState:
    ctx = event.context
    return _SessionState(
        exists=False,
        is_active=True,
        started_at=event.at,
        last_activity=event.at,
        ip_address=None if ctx.anonymous else ctx.ip_address,
        user_agent=None if ctx.anonymous else ctx.user_agent,
        dirty=True,
    )


#: The page a session that reported none is counted on, by its first checkout event.
_IMPLIED_PAGE: dict[str, str] = {
    "checkout-start": PageType.CHECKOUT.value,
    "payment-start": PageType.PAYMENT.value,
    "payment-error": PageType.PAYMENT.value,
    "payment-success": PageType.PAYMENT.value,
}


def apply_batch(conn: Connection, events: list[TrackedEvent]) -> BatchOutcome:
    """Apply ``events`` in order inside the caller's transaction."""
    applied = _log_events(conn, events)
    live = [event for event, ok in zip(events, applied, strict=True) if ok]
    plan = _Plan()
    # A session/start names a known session only with a client-chosen id (the tracker,
    # identify()); ids the server just made need no lookup.
    wanted = list(dict.fromkeys(
        e.session_id for e in live
        if e.kind != "session-start" or getattr(e.body, "session_id", None) is not None
    ))
    if wanted:
        plan.states = _load_sessions(conn, wanted)
    outcome = BatchOutcome(applied=applied)
    for event in live:
        sid = event.session_id
        state = plan.states.get(sid)
        if state is None:
            # An id the server has never seen (or a fresh session/start) creates it.
            state = plan.states[sid] = _new_state(event)
        _touch(state, event)
        kind = event.kind
        body = event.body
        if kind == "page-visit":
            assert isinstance(body, PageVisitIn)
            _close_visit(plan, sid, state, event.at)
            visit = {
                "session_id": sid,
                "page_type": body.page_type,
                "page_identifier": body.page_identifier,
                "page_url": body.page_url,
                "entered_at": event.at,
                "exited_at": None,
                "duration_seconds": None,
                "is_active": True,
            }
            plan.visit_inserts.append(visit)
            state.new_visit = visit
            state.current_page_type = body.page_type
            state.current_page_identifier = body.page_identifier
        elif kind == "session-start":
            assert isinstance(body, SessionStartIn)
            if not event.context.anonymous:
                # Fields not sent keep their value: identify() may name only an email.
                for name in ("user_id", "email", "phone"):
                    value = getattr(body, name)
                    if value is not None and value != getattr(state, name):
                        setattr(state, name, value)
                        state.contact_dirty = True
        elif kind == "session-end":
            _close_visit(plan, sid, state, event.at)
            state.is_active = False
            state.ended_at = event.at
            state.state_dirty = True
        elif kind in _IMPLIED_PAGE:
            if state.current_page_type is None:
                # A session is live once it reports a page or a checkout: one that
                # skipped its page visits is counted where its checkout stands.
                state.current_page_type = _IMPLIED_PAGE[kind]
            if _apply_checkout_event(conn, plan, state, event):
                outcome.payment_errors += 1
    _write_sessions(conn, plan)
    return outcome


def _write_sessions(conn: Connection, plan: _Plan) -> None:
    sql = hot_sql(conn)
    ts, boolean = sql.ts, sql.boolean
    new_rows: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    contact_updates: list[tuple[Any, ...]] = []
    state_updates: list[tuple[Any, ...]] = []
    for sid, st in plan.states.items():
        if not st.dirty:
            continue
        if st.exists:
            updates.append(
                (sid, ts(st.last_activity), st.current_page_type, st.current_page_identifier)
            )
            if st.state_dirty:
                state_updates.append((boolean(st.is_active), ts(st.ended_at), sid))
            if st.contact_dirty:
                # Separate and rare: assigning indexed columns rewrites their index
                # entries even when the value stays the same.
                contact_updates.append(
                    (st.user_id, st.email, st.phone, st.ip_address, st.user_agent, sid)
                )
        else:
            new_rows.append(
                (sid, st.user_id, st.email, st.phone, st.ip_address, st.user_agent,
                 boolean(st.is_active), ts(st.started_at), ts(st.last_activity),
                 ts(st.ended_at), st.current_page_type, st.current_page_identifier)
            )
    sql.bulk(conn, sql.insert_sessions, new_rows)
    sql.bulk(conn, sql.update_sessions, updates)
    sql.executemany(conn, sql.update_session_state, state_updates)
    sql.executemany(conn, sql.update_session_client, contact_updates)
    sql.bulk(
        conn,
        sql.close_visits,
        [(c["b_session_id"], ts(c["exited_at"]), c["duration_seconds"])
         for c in plan.visit_closes],
    )
    sql.bulk(
        conn,
        sql.insert_visits,
        [
            (v["session_id"], v["page_type"], v["page_identifier"], v["page_url"],
             ts(v["entered_at"]), ts(v["exited_at"]), v["duration_seconds"],
             boolean(v["is_active"]))
            for v in plan.visit_inserts
        ],
    )


def _latest_checkout(conn: Connection, plan: _Plan, session_id: str) -> _Checkout | None:
    if session_id in plan.checkouts:
        return plan.checkouts[session_id]
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
    found = (
        _Checkout(row.id, row.status, row.total_amount, row.payment_method, row.error_count,
                  row.item_count)
        if row
        else None
    )
    plan.checkouts[session_id] = found
    return found


#: Payment methods that say nothing: a method named later replaces them.
_UNKNOWN_METHODS = frozenset({"", "unknown", "undefined", "null", "none"})
_CENT = Decimal("0.01")
#: The payment-method columns' size: a method read from free-form details is cut to it.
METHOD_LENGTH = 255


def _method_unknown(method: str | None) -> bool:
    return method is None or method.strip().casefold() in _UNKNOWN_METHODS


@dataclass(slots=True)
class _Carried:
    """What a checkout or payment event tells about its checkout."""

    amount: Decimal | None = None
    method: str | None = None
    items: list[Any] | None = None
    item_count: int | None = None


def _loose_amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except ArithmeticError:
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        return None
    return amount


def _loose_method(value: Any) -> str | None:
    if not isinstance(value, str) or _method_unknown(value):
        return None
    return value.strip()[:METHOD_LENGTH] or None


def _loose_count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_ITEM_COUNT:
        return value
    return None


def _carried(body: BaseModel) -> _Carried:
    """The checkout facts an event carries: its own fields, else its error's details.

    The shop's client puts them in the nested error's own ``errorDetails``
    (``{"totalAmount": 84.2, "paymentMethod": "ziina", "itemCount": 2}``); free-form
    details are read leniently, a value that does not fit is ignored.
    """
    if isinstance(body, CheckoutStartIn):
        return _Carried(body.total_amount, body.payment_method, body.checkout_items,
                        len(body.checkout_items))
    if not isinstance(body, PaymentContextIn):
        return _Carried()
    found = _Carried(body.total_amount, body.payment_method, body.checkout_items,
                     body.item_count)
    if _method_unknown(found.method):
        found.method = None
    if isinstance(body, PaymentErrorIn):
        places = [body.normalised().error_details, body.error_details]
        for details in (d for d in places if isinstance(d, dict)):
            if found.amount is None:
                found.amount = _loose_amount(details.get("totalAmount", details.get("amount")))
            if found.method is None:
                found.method = _loose_method(details.get("paymentMethod"))
            items = details.get("checkoutItems")
            if found.items is None and isinstance(items, list) and (
                len(items) <= MAX_CHECKOUT_ITEMS
            ):
                found.items = items
            if found.item_count is None:
                found.item_count = _loose_count(details.get("itemCount"))
    if found.item_count is None and found.items is not None:
        found.item_count = len(found.items)
    if found.amount is not None:
        found.amount = found.amount.quantize(_CENT)
    return found


def _create_checkout(
    conn: Connection, plan: _Plan, state: _SessionState, event: TrackedEvent,
    carried: _Carried, status: CheckoutStatus, **steps: Any,
) -> _Checkout:
    at = event.at
    new_id = conn.execute(
        insert(checkouts_t)
        .values(
            session_id=event.session_id,
            user_id=state.user_id,
            email=state.email,
            phone=state.phone,
            checkout_items=carried.items,
            item_count=carried.item_count,
            total_amount=carried.amount,
            payment_method=carried.method,
            status=status.value,
            error_count=0,
            started_at=at,
            updated_at=at,
            **steps,
        )
        .returning(checkouts_t.c.id)
    ).scalar_one()
    created = _Checkout(new_id, status.value, carried.amount, carried.method, 0,
                        carried.item_count)
    plan.checkouts[event.session_id] = created
    return created


def _fill_missing(values: dict[str, Any], checkout: _Checkout, carried: _Carried) -> None:
    """Complete a checkout with what a payment event names and the checkout lacks."""
    if carried.method is not None and _method_unknown(checkout.payment_method):
        values["payment_method"] = checkout.payment_method = carried.method
    if carried.amount is not None and checkout.total_amount is None:
        values["total_amount"] = checkout.total_amount = carried.amount
    if carried.item_count is not None and checkout.item_count is None:
        values["item_count"] = checkout.item_count = carried.item_count
        if carried.items is not None:
            values["checkout_items"] = carried.items


def _apply_checkout_event(
    conn: Connection, plan: _Plan, state: _SessionState, event: TrackedEvent
) -> bool:
    """Write one checkout/payment event; return True when it recorded a payment error.

    A payment event for a session without an open checkout (the client dropped the
    checkout start) creates the checkout from what the event carries, so the error
    has its amount and the success that follows is counted.
    """
    sid, at, body = event.session_id, event.at, event.body
    c = checkouts_t.c
    current = _latest_checkout(conn, plan, sid)
    open_checkout = current if current and current.status != CheckoutStatus.COMPLETED else None
    carried = _carried(body)

    if isinstance(body, CheckoutStartIn):
        if open_checkout is not None:
            # Starting over (a changed basket) leaves the unfinished checkout behind.
            conn.execute(
                update(checkouts_t)
                .where(c.id == open_checkout.id)
                .values(status=CheckoutStatus.ABANDONED.value, updated_at=at)
            )
        _create_checkout(conn, plan, state, event, carried, CheckoutStatus.IN_PROGRESS)
        return False

    if isinstance(body, PaymentStartIn):
        if open_checkout is None:
            _create_checkout(conn, plan, state, event, carried, CheckoutStatus.PAYMENT_STARTED,
                             payment_started_at=at)
            return False
        values: dict[str, Any] = {
            "status": CheckoutStatus.PAYMENT_STARTED.value,
            "payment_started_at": at,
            "updated_at": at,
        }
        if carried.method is not None:
            # The method chosen at payment replaces the one guessed at checkout.
            values["payment_method"] = open_checkout.payment_method = carried.method
        _fill_missing(values, open_checkout, carried)
        conn.execute(update(checkouts_t).where(c.id == open_checkout.id).values(**values))
        open_checkout.status = CheckoutStatus.PAYMENT_STARTED.value
        return False

    if isinstance(body, PaymentErrorIn):
        error = body.normalised()
        details = error.model_dump(mode="json", by_alias=True, exclude_none=True)
        if event.context.anonymous:
            details.pop("userAgent", None)
        if open_checkout is None:
            open_checkout = _create_checkout(conn, plan, state, event, carried,
                                             CheckoutStatus.FAILED)
        open_checkout.error_count += 1
        open_checkout.status = CheckoutStatus.FAILED.value
        values = {
            "status": CheckoutStatus.FAILED.value,
            "payment_error_at": at,
            "error_count": open_checkout.error_count,
            "updated_at": at,
        }
        if carried.method is not None and carried.method == body.payment_method:
            # Named by the event itself (not only deep in its details): it is what failed.
            values["payment_method"] = open_checkout.payment_method = carried.method
        _fill_missing(values, open_checkout, carried)
        conn.execute(update(checkouts_t).where(c.id == open_checkout.id).values(**values))
        conn.execute(
            insert(errors_t).values(
                checkout_id=open_checkout.id,
                session_id=sid,
                attempt=open_checkout.error_count,
                error_code=error.error_code,
                error_message=error.error_message,
                error_details=details,
                amount=open_checkout.total_amount,
                payment_method=open_checkout.payment_method,
                page_url=error.url,
                ip_address=event.context.ip_address,
                user_agent=event.context.user_agent,
                occurred_at=at,
            )
        )
        return True

    # payment-success
    if open_checkout is None:
        if current is not None:
            return False  # the latest checkout is paid already: a repeated success
        _create_checkout(conn, plan, state, event, carried, CheckoutStatus.COMPLETED,
                         completed_at=at)
        return False
    values = {"status": CheckoutStatus.COMPLETED.value, "completed_at": at, "updated_at": at}
    _fill_missing(values, open_checkout, carried)
    conn.execute(update(checkouts_t).where(c.id == open_checkout.id).values(**values))
    open_checkout.status = CheckoutStatus.COMPLETED.value
    return False
