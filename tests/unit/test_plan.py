"""Planning a batch's session and page-visit changes in memory (no database, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nilemetrics.protocol.names import EventType
from nilemetrics.protocol.registry import EVENTS
from nilemetrics.server.ingestion.events import TrackedEvent, tracked_event
from nilemetrics.server.ingestion.plan import (
    Contact,
    NewVisit,
    SessionState,
    VisitClosing,
    plan_batch,
)
from nilemetrics.server.ingestion.privacy import RequestContext

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SID = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
OTHER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
CLIENT = RequestContext(ip_address="203.0.113.0", user_agent="Firefox/128", anonymous=False)
ANONYMOUS = RequestContext(ip_address=None, user_agent=None, anonymous=True)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    kind: EventType,
    seconds: float,
    sid: str = SID,
    context: RequestContext = CLIENT,
    **fields: Any,
) -> TrackedEvent:
    """A validated, minimised event as the HTTP side hands it to the writer."""
    body = EVENTS[kind].body.model_validate({"sessionId": sid, **fields})
    return tracked_event(kind, sid, body, context, at(seconds))


def visit(seconds: float, page_type: str, sid: str = SID, **fields: Any) -> TrackedEvent:
    return event(EventType.PAGE_VISIT, seconds, sid, pageType=page_type, **fields)


def known(**fields: Any) -> SessionState:
    """A session loaded from the database, active, last seen at T0 - 60 s."""
    values: dict[str, Any] = {
        "exists": True,
        "is_active": True,
        "started_at": at(-600),
        "last_activity": at(-60),
    }
    values.update(fields)
    return SessionState(**values)


def test_a_page_visit_closes_the_previous_visit_of_the_same_batch() -> None:
    """Two page visits in one batch: the first is inserted closed, with the time between them."""
    plan = plan_batch(
        [visit(0, "homepage", pageUrl="https://shop.example/"), visit(7.5, "product",
                                                                       pageIdentifier="p-42")],
        {},
    )
    assert plan.visit_inserts == [
        NewVisit(SID, "homepage", None, "https://shop.example/", at(0), at(7.5), 7.5, False),
        NewVisit(SID, "product", "p-42", None, at(7.5), None, None, True),
    ]
    assert plan.visit_closes == []
    state = plan.states[SID]
    assert (state.current_page_type, state.current_page_identifier) == ("product", "p-42")
    assert state.new_visit is plan.visit_inserts[1]
    assert (state.exists, state.dirty, state.started_at, state.last_activity) == (
        False, True, at(0), at(7.5)
    )


def test_a_page_visit_closes_the_open_visit_stored_in_the_database() -> None:
    """A known session's open visit (its id and start) is closed once, at the next page visit."""
    loaded = {SID: known(current_page_type="homepage", db_open_visit_id=7,
                         db_open_visit_at=at(-42))}
    plan = plan_batch([visit(0, "search"), visit(3, "product", pageIdentifier="p-1")], loaded)
    assert plan.visit_closes == [VisitClosing(SID, 7, at(0), 42.0)]
    assert [(v.page_type, v.duration_seconds, v.is_active) for v in plan.visit_inserts] == [
        ("search", 3.0, False),
        ("product", None, True),
    ]
    assert plan.states[SID].db_open_visit_id is None
    assert plan.states[SID].db_open_visit_at is None
    assert plan.states[SID].last_activity == at(3)


def test_a_visit_never_gets_a_negative_duration() -> None:
    """An open visit stored as starting after the event (clock skew) closes with 0 seconds."""
    loaded = {SID: known(db_open_visit_id=7, db_open_visit_at=at(5))}
    plan = plan_batch([visit(0, "homepage")], loaded)
    assert plan.visit_closes == [VisitClosing(SID, 7, at(0), 0.0)]


def test_session_end_closes_the_open_visit_and_marks_the_session_inactive() -> None:
    """session-end closes the batch's own open visit with its duration and ends the session."""
    plan = plan_batch([visit(0, "checkout"), event(EventType.SESSION_END, 12)], {})
    assert [(v.exited_at, v.duration_seconds, v.is_active) for v in plan.visit_inserts] == [
        (at(12), 12.0, False)
    ]
    state = plan.states[SID]
    assert (state.is_active, state.ended_at, state.state_dirty) == (False, at(12), True)
    assert state.new_visit is None
    # Where it was stays recorded; the live counts skip it as inactive.
    assert state.current_page_type == "checkout"


def test_session_end_closes_the_visit_stored_in_the_database() -> None:
    """session-end of a known session closes its stored open visit."""
    loaded = {SID: known(current_page_type="product", db_open_visit_id=7, db_open_visit_at=at(-20))}
    plan = plan_batch([event(EventType.SESSION_END, 10)], loaded)
    assert plan.visit_closes == [VisitClosing(SID, 7, at(10), 30.0)]
    assert plan.visit_inserts == []
    assert (plan.states[SID].is_active, plan.states[SID].ended_at) == (False, at(10))


def test_a_later_event_revives_an_ended_session() -> None:
    """A heartbeat for a session that ended makes it active again, with no end time."""
    loaded = {SID: known(is_active=False, ended_at=at(-30), current_page_type="homepage")}
    plan = plan_batch([event(EventType.SESSION_HEARTBEAT, 0)], loaded)
    state = plan.states[SID]
    assert (state.is_active, state.ended_at, state.state_dirty) == (True, None, True)
    assert (state.last_activity, state.current_page_type) == (at(0), "homepage")


def test_a_session_ended_and_revived_in_one_batch_is_active_at_the_end() -> None:
    """End then a page visit in the same batch: the session ends up active on the new page."""
    plan = plan_batch(
        [visit(0, "homepage"), event(EventType.SESSION_END, 4), visit(9, "category",
                                                                       pageIdentifier="shoes")],
        {},
    )
    state = plan.states[SID]
    assert (state.is_active, state.ended_at, state.current_page_type) == (True, None, "category")
    assert [(v.page_type, v.duration_seconds) for v in plan.visit_inserts] == [
        ("homepage", 4.0), ("category", None)
    ]


def test_a_heartbeat_on_an_active_session_changes_no_state() -> None:
    """A heartbeat only moves last_activity: no state or contact change to write."""
    loaded = {SID: known(ip_address="203.0.113.0", user_agent="Firefox/128")}
    plan = plan_batch([event(EventType.SESSION_HEARTBEAT, 0)], loaded)
    state = plan.states[SID]
    assert (state.dirty, state.state_dirty, state.contact_dirty) == (True, False, False)
    assert state.last_activity == at(0)


def test_a_session_that_only_started_is_on_no_page() -> None:
    """session-start alone creates the session without a current page or a visit."""
    plan = plan_batch([event(EventType.SESSION_START, 0)], {})
    state = plan.states[SID]
    assert (state.exists, state.is_active, state.current_page_type) == (False, True, None)
    assert (plan.visit_inserts, plan.visit_closes, plan.checkout_events) == ([], [], [])


def test_a_checkout_event_puts_a_session_without_a_page_on_its_implied_page() -> None:
    """checkout-start puts a page-less session on checkout, a payment event on payment."""
    checkout = event(EventType.CHECKOUT_START, 0, checkoutItems=[{"sku": "a"}], totalAmount=5)
    payment = event(EventType.PAYMENT_ERROR, 0, OTHER, errorCode="declined")
    plan = plan_batch([checkout, payment], {})
    assert plan.states[SID].current_page_type == "checkout"
    assert plan.states[OTHER].current_page_type == "payment"
    assert plan.visit_inserts == []
    assert [e for e, _ in plan.checkout_events] == [checkout, payment]


def test_each_payment_event_implies_the_payment_page() -> None:
    """payment-start and payment-success also put a page-less session on payment."""
    for kind in (EventType.PAYMENT_START, EventType.PAYMENT_SUCCESS):
        plan = plan_batch([event(kind, 0)], {})
        assert plan.states[SID].current_page_type == "payment", kind


def test_a_checkout_event_leaves_a_reported_page_as_it_is() -> None:
    """A session already on a page stays there when its checkout event comes."""
    events = [visit(0, "product", pageIdentifier="p-9"), event(EventType.PAYMENT_START, 2)]
    plan = plan_batch(events, {})
    state = plan.states[SID]
    assert (state.current_page_type, state.current_page_identifier) == ("product", "p-9")


def test_checkout_events_carry_the_contact_known_when_they_came() -> None:
    """Each checkout event keeps the contact of its session at that point of the batch."""
    start = event(EventType.CHECKOUT_START, 0, checkoutItems=[], totalAmount=1)
    identify = event(EventType.SESSION_START, 1, email="amal@example.com", userId=77)
    success = event(EventType.PAYMENT_SUCCESS, 2)
    plan = plan_batch([start, identify, success], {})
    assert plan.checkout_events == [
        (start, Contact(None, None, None)),
        (success, Contact("77", "amal@example.com", None)),
    ]


def test_identify_sets_contact_dirty_only_when_a_value_changes() -> None:
    """session-start on a known session: a new email is written, the same email is not."""
    same = plan_batch(
        [event(EventType.SESSION_START, 0, email="amal@example.com")],
        {SID: known(email="amal@example.com", ip_address="203.0.113.0", user_agent="Firefox/128")},
    )
    assert (same.states[SID].email, same.states[SID].contact_dirty) == ("amal@example.com", False)

    changed = plan_batch(
        [event(EventType.SESSION_START, 0, email="amal@example.com")],
        {SID: known(user_id="77", phone="+9715", ip_address="203.0.113.0",
                    user_agent="Firefox/128")},
    )
    state = changed.states[SID]
    assert state.contact_dirty is True
    # Fields not sent keep their value: identify() may name only an email.
    assert (state.user_id, state.email, state.phone) == ("77", "amal@example.com", "+9715")


def test_a_known_session_gets_a_missing_address_from_the_request() -> None:
    """A stored session without IP and user agent takes them from its next request."""
    plan = plan_batch([event(EventType.SESSION_HEARTBEAT, 0)], {SID: known()})
    state = plan.states[SID]
    assert (state.ip_address, state.user_agent, state.contact_dirty) == (
        "203.0.113.0", "Firefox/128", True
    )


def test_a_stored_address_is_not_replaced_by_a_later_request() -> None:
    """A session keeps the IP and user agent it was first seen with."""
    loaded = {SID: known(ip_address="198.51.100.0", user_agent="Safari/17")}
    plan = plan_batch([event(EventType.SESSION_HEARTBEAT, 0)], loaded)
    state = plan.states[SID]
    assert (state.ip_address, state.user_agent, state.contact_dirty) == (
        "198.51.100.0", "Safari/17", False
    )


def test_a_new_session_stores_its_request_address() -> None:
    """A session created by the batch starts with the request's (minimised) IP and agent."""
    plan = plan_batch([event(EventType.SESSION_START, 0)], {})
    state = plan.states[SID]
    assert (state.ip_address, state.user_agent) == ("203.0.113.0", "Firefox/128")


def test_an_anonymous_sender_leaves_no_ip_agent_or_contact() -> None:
    """Under a privacy signal the session stores no IP, user agent, email, phone or user id."""
    start = event(EventType.SESSION_START, 0, context=ANONYMOUS, email="amal@example.com",
                  phone="+97150", userId="u-1")
    plan = plan_batch([start, visit(1, "homepage", context=ANONYMOUS)], {})
    state = plan.states[SID]
    assert (state.ip_address, state.user_agent) == (None, None)
    assert (state.user_id, state.email, state.phone) == (None, None, None)
    assert state.contact_dirty is False


def test_an_anonymous_request_does_not_touch_a_known_session_contact() -> None:
    """An anonymous identify on a known session changes none of its contact fields."""
    loaded = {SID: known(email="old@example.com")}
    plan = plan_batch(
        [event(EventType.SESSION_START, 0, context=ANONYMOUS, email="new@example.com")], loaded
    )
    state = plan.states[SID]
    assert (state.email, state.ip_address, state.contact_dirty) == ("old@example.com", None, False)


def test_sessions_of_one_batch_are_planned_independently() -> None:
    """Interleaved events of two sessions close only their own session's visits."""
    plan = plan_batch(
        [visit(0, "homepage"), visit(1, "search", OTHER), visit(5, "other"),
         visit(11, "product", OTHER, pageIdentifier="p")],
        {},
    )
    assert [(v.session_id, v.page_type, v.duration_seconds) for v in plan.visit_inserts] == [
        (SID, "homepage", 5.0),
        (OTHER, "search", 10.0),
        (SID, "other", None),
        (OTHER, "product", None),
    ]
