"""Names of the wire contract: paths, page types, event types, frame names (DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

API_PREFIX: Final = "/api/metrics"
WS_PATH: Final = f"{API_PREFIX}/ws"
#: The batch endpoint (``POST``), relative to :data:`API_PREFIX`.
BATCH_PATH: Final = "/events"
SOCKETIO_PATH: Final = "/socket.io"


class EventType(StrEnum):
    """Kinds of tracking events: the batch endpoint's ``type`` and the event log's type.

    Each has a body model, a single-event route and a batch entry, all taken from
    ``nilemetrics.protocol.registry.EVENTS``.
    """

    SESSION_START = "session-start"
    SESSION_HEARTBEAT = "session-heartbeat"
    PAGE_VISIT = "page-visit"
    CHECKOUT_START = "checkout-start"
    PAYMENT_START = "payment-start"
    PAYMENT_ERROR = "payment-error"
    PAYMENT_SUCCESS = "payment-success"
    SESSION_END = "session-end"
    EVENT = "event"


class PageType(StrEnum):
    """Page types with a meaning of their own (any other slug is accepted too)."""

    HOMEPAGE = "homepage"
    CATEGORY = "category"
    OFFER = "offer"
    PRODUCT = "product"
    SEARCH = "search"
    CHECKOUT = "checkout"
    PAYMENT = "payment"
    PAYMENT_ERROR = "payment_error"
    OTHER = "other"


#: What a page type may be: any slug. Types nobody listed are stored and counted as sent.
PAGE_TYPE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

#: What a custom event's name may be: a slug, like a page type.
EVENT_NAME_PATTERN: Final = PAGE_TYPE_PATTERN

#: Custom event names the tracker and the reports give a meaning: an experiment's
#: assignment (properties ``experiment``, ``variant``, ``visitor``) and a click
#: (``path``, ``x``, ``y``, ``page``). Their properties are checked.
EXPERIMENT_EVENT: Final = "experiment"
CLICK_EVENT: Final = "click"
#: The click grid: positions are reported as a cell of a CLICK_GRID x CLICK_GRID grid
#: over the viewport (0 = left/top).
CLICK_GRID: Final = 10


class Platform(StrEnum):
    """Where a session runs (``session/start``'s ``platform``); anything else is ``other``."""

    WEB = "web"
    IOS = "ios"
    ANDROID = "android"
    OTHER = "other"


#: Page types whose visits must name what was visited (category id, offer id).
IDENTIFIED_PAGE_TYPES: Final = frozenset({PageType.CATEGORY, PageType.OFFER})


class WsEvent(StrEnum):
    """Names of WebSocket frames: ``{"event": NAME, "data": ...}``."""

    METRICS_UPDATE = "metrics-update"
    PAYMENT_ERRORS_UPDATE = "payment-errors-update"
    METRICS_HEARTBEAT = "metrics-heartbeat"
    JOIN_SELLER_DASHBOARD = "join-seller-dashboard"
    ERROR = "error"


class CheckoutStatus(StrEnum):
    """Life cycle of one checkout."""

    IN_PROGRESS = "in_progress"
    PAYMENT_STARTED = "payment_started"
    FAILED = "failed"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


#: Close code a WebSocket gets for a missing or wrong token (policy violation).
WS_CLOSE_UNAUTHORIZED: Final = 1008


def wire_time(at: datetime) -> str:
    """A timestamp as the wire carries it: ISO 8601, UTC written as ``Z``."""
    return at.isoformat().replace("+00:00", "Z")
