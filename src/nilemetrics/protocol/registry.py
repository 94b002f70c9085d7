"""The one registry of event types: each type's body model, single-event route and answer.

The server derives from it the single-event routes, the batch endpoint's item
types, the fast path and the OpenAPI document; tests check that every
``EventType`` has an entry. Adding an event type is: a member of ``EventType``,
a body model in ``bodies``, an entry here, and what the server does with it
(``server/ingestion``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel

from nilemetrics.protocol.answers import SessionStartOut, SuccessOut
from nilemetrics.protocol.bodies import (
    CheckoutStartIn,
    CustomEventIn,
    PageVisitIn,
    PaymentErrorIn,
    PaymentStartIn,
    PaymentSuccessIn,
    SessionEventIn,
    SessionStartIn,
)
from nilemetrics.protocol.names import EventType

#: A body model of an event: every one names its session (``session/start`` may
#: leave it to the server).
EventBody = SessionEventIn | SessionStartIn


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type: what it carries and where it is posted on its own."""

    kind: EventType
    path: str
    """The single-event route, relative to ``API_PREFIX``."""
    body: type[SessionEventIn] | type[SessionStartIn]
    summary: str
    """What the event says (the route's OpenAPI description)."""
    answer: type[BaseModel] = SuccessOut
    fast: bool = False
    """Valid bodies may be answered without FastAPI's routing (the hottest routes,
    whose bodies parse from JSON bytes to exactly the model FastAPI's
    parse-then-validate gives)."""


_SPECS = (
    # The hottest first: FastAPI matches routes in order.
    EventSpec(EventType.PAGE_VISIT, "/track/page-visit", PageVisitIn,
              "The session is now on this page.", fast=True),
    EventSpec(EventType.SESSION_HEARTBEAT, "/session/heartbeat", SessionEventIn,
              "Keep a session live (the client sends one every 30 s while visible).", fast=True),
    EventSpec(EventType.SESSION_START, "/session/start", SessionStartIn,
              "Start a session; the body (optional) names a logged-in customer.",
              answer=SessionStartOut),
    EventSpec(EventType.SESSION_END, "/session/end", SessionEventIn,
              "End a session now (also accepted as a ``navigator.sendBeacon`` blob).", fast=True),
    EventSpec(EventType.CHECKOUT_START, "/track/checkout-start", CheckoutStartIn,
              "The session started a checkout with this basket."),
    EventSpec(EventType.PAYMENT_START, "/track/payment-start", PaymentStartIn,
              "The session's checkout went to payment.", fast=True),
    EventSpec(EventType.PAYMENT_ERROR, "/track/payment-error", PaymentErrorIn,
              "A payment failed (nested ``errorDetails`` form or flat form)."),
    EventSpec(EventType.PAYMENT_SUCCESS, "/track/payment-success", PaymentSuccessIn,
              "The session's checkout was paid.", fast=True),
    EventSpec(EventType.EVENT, "/track/event", CustomEventIn,
              "A custom event: a name (a slug) and up to 20 properties (string, number or "
              "boolean); also an experiment's assignment (name 'experiment') or a click.",
              fast=True),
)

#: Every event type, in route order.
EVENTS: Final[Mapping[EventType, EventSpec]] = MappingProxyType(
    {spec.kind: spec for spec in _SPECS}
)
