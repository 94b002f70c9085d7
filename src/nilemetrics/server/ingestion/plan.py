"""Planning a batch's session and page-visit changes in memory (no database here).

Session and page-visit changes are nearly all the traffic. They are worked out
here, event by event, from the sessions as loaded, and written afterwards with a
few multi-row statements (``apply``). Checkout and payment events are collected
in order, each with the contact fields its session had at that point, for the
checkout state machine (``checkout``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nilemetrics.protocol.bodies import PageVisitIn, SessionStartIn
from nilemetrics.protocol.names import EventType, PageType
from nilemetrics.server.ingestion.events import TrackedEvent


@dataclass(slots=True)
class SessionState:
    """A session as the batch leaves it; ``exists``: it has a row already."""

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
    platform: str | None = None
    app_version: str | None = None
    #: The session's open visit in the database (None: no open visit there): its id
    #: and when it began.
    db_open_visit_id: int | None = None
    db_open_visit_at: datetime | None = None
    #: The visit this batch opened and has not closed yet.
    new_visit: NewVisit | None = None
    dirty: bool = False
    contact_dirty: bool = False
    state_dirty: bool = False
    #: A session/start named the platform or app version (not loaded: only written).
    platform_dirty: bool = False


@dataclass(slots=True)
class NewVisit:
    """A page visit this batch inserts (closed again if the session moves on in the batch)."""

    session_id: str
    page_type: str
    page_identifier: str | None
    page_url: str | None
    entered_at: datetime
    exited_at: datetime | None = None
    duration_seconds: float | None = None
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class VisitClosing:
    """A session's open visit in the database (``visit_id``), closed at ``exited_at``."""

    session_id: str
    visit_id: int
    exited_at: datetime
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class Contact:
    """Who a session's customer is, as far as known when its checkout event came."""

    user_id: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(slots=True)
class Plan:
    """What a batch changes in sessions and visits, and its checkout events in order."""

    states: dict[str, SessionState] = field(default_factory=dict)
    visit_closes: list[VisitClosing] = field(default_factory=list)
    visit_inserts: list[NewVisit] = field(default_factory=list)
    checkout_events: list[tuple[TrackedEvent, Contact]] = field(default_factory=list)


#: The page a session that reported none is counted on, by its first checkout event.
IMPLIED_PAGE: dict[str, str] = {
    EventType.CHECKOUT_START: PageType.CHECKOUT.value,
    EventType.PAYMENT_START: PageType.PAYMENT.value,
    EventType.PAYMENT_ERROR: PageType.PAYMENT.value,
    EventType.PAYMENT_SUCCESS: PageType.PAYMENT.value,
}


def plan_batch(events: list[TrackedEvent], loaded: dict[str, SessionState]) -> Plan:
    """Work out, in order, what ``events`` do to their sessions (``loaded``: known ones).

    An id never seen before creates its session; a later event revives an ended one.
    """
    plan = Plan(states=loaded)
    for event in events:
        sid = event.session_id
        state = plan.states.get(sid)
        if state is None:
            state = plan.states[sid] = _new_state(event)
        _touch(state, event)
        kind, body = event.kind, event.body
        if kind == EventType.PAGE_VISIT and isinstance(body, PageVisitIn):
            _close_visit(plan, sid, state, event.at)
            visit = NewVisit(sid, body.page_type, body.page_identifier, body.page_url, event.at)
            plan.visit_inserts.append(visit)
            state.new_visit = visit
            state.current_page_type = body.page_type
            state.current_page_identifier = body.page_identifier
        elif kind == EventType.SESSION_START and isinstance(body, SessionStartIn):
            # Fields not sent keep their value: identify() may name only an email.
            # (An anonymous sender's body has none: see privacy.minimise.)
            for name in ("user_id", "email", "phone"):
                value = getattr(body, name)
                if value is not None and value != getattr(state, name):
                    setattr(state, name, value)
                    state.contact_dirty = True
            if body.platform is not None or body.app_version is not None:
                # An app that upgrades mid-session sends its new version with a new start.
                if body.platform is not None:
                    state.platform = body.platform.value
                if body.app_version is not None:
                    state.app_version = body.app_version
                state.platform_dirty = True
        elif kind == EventType.SESSION_END:
            _close_visit(plan, sid, state, event.at)
            state.is_active = False
            state.ended_at = event.at
            state.state_dirty = True
        elif kind in IMPLIED_PAGE:
            if state.current_page_type is None:
                # A session is live once it reports a page or a checkout: one that
                # skipped its page visits is counted where its checkout stands.
                state.current_page_type = IMPLIED_PAGE[kind]
            plan.checkout_events.append(
                (event, Contact(state.user_id, state.email, state.phone))
            )
    return plan


def _new_state(event: TrackedEvent) -> SessionState:
    return SessionState(
        exists=False,
        is_active=True,
        started_at=event.at,
        last_activity=event.at,
        ip_address=event.context.ip_address,
        user_agent=event.context.user_agent,
        dirty=True,
    )


def _touch(state: SessionState, event: TrackedEvent) -> None:
    state.dirty = True
    if event.at > state.last_activity:
        state.last_activity = event.at
    if not state.is_active:
        # A later event revives a session that ended or timed out.
        state.is_active = True
        state.ended_at = None
        state.state_dirty = True
    ctx = event.context  # already minimised: no address for an anonymous sender
    if state.ip_address is None and ctx.ip_address:
        state.ip_address = ctx.ip_address
        state.contact_dirty = True
    if state.user_agent is None and ctx.user_agent:
        state.user_agent = ctx.user_agent
        state.contact_dirty = True


def _close_visit(plan: Plan, session_id: str, state: SessionState, at: datetime) -> None:
    if state.new_visit is not None:
        visit = state.new_visit
        visit.exited_at = at
        visit.duration_seconds = max(0.0, (at - visit.entered_at).total_seconds())
        visit.is_active = False
        state.new_visit = None
    elif state.db_open_visit_id is not None and state.db_open_visit_at is not None:
        plan.visit_closes.append(VisitClosing(
            session_id, state.db_open_visit_id, at,
            max(0.0, (at - state.db_open_visit_at).total_seconds()),
        ))
        state.db_open_visit_id = state.db_open_visit_at = None
