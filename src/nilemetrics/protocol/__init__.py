"""The wire contract, the one place it is written down (stdlib and pydantic only).

- ``names``: paths, page types, event types, frame names, the wire time format;
- ``bodies``: what clients send to the ingestion API, with its limits;
- ``text``: the text policy every incoming string goes through;
- ``registry``: each event type's body model and route (``EVENTS``);
- ``answers``: the ingestion answers and the error answers;
- ``pushed``: live metrics, payment-error rows, heartbeats, page sessions;
- ``frames``: which body each WebSocket frame carries;
- ``operations``: cleanup and erasure;
- ``history``: history buckets, session lookups, customer journeys;
- ``report``: the session-analytics report (``GET /report``, ``nilemetrics report``);
- ``lenient``: parsing for dashboards that must show what they can.

The server builds its routes, answers and frames from these models; the
dashboard parses with them.
"""

from nilemetrics.protocol.names import (
    API_PREFIX,
    BATCH_PATH,
    IDENTIFIED_PAGE_TYPES,
    PAGE_TYPE_PATTERN,
    SOCKETIO_PATH,
    WS_CLOSE_UNAUTHORIZED,
    WS_PATH,
    CheckoutStatus,
    EventType,
    PageType,
    WsEvent,
    wire_time,
)

__all__ = [
    "API_PREFIX",
    "BATCH_PATH",
    "IDENTIFIED_PAGE_TYPES",
    "PAGE_TYPE_PATTERN",
    "SOCKETIO_PATH",
    "WS_CLOSE_UNAUTHORIZED",
    "WS_PATH",
    "CheckoutStatus",
    "EventType",
    "PageType",
    "WsEvent",
    "wire_time",
]
