"""WebSocket (and Socket.IO) frames: ``{"event": NAME, "data": ...}``, one model per name."""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter

from nilemetrics.protocol.names import WsEvent
from nilemetrics.protocol.pushed import Heartbeat, LiveMetrics, Notice, PaymentErrorRow

#: What the ``data`` of each frame the server sends holds.
FRAME_DATA: Final[dict[WsEvent, TypeAdapter[Any]]] = {
    WsEvent.METRICS_UPDATE: TypeAdapter(LiveMetrics),
    WsEvent.PAYMENT_ERRORS_UPDATE: TypeAdapter(list[PaymentErrorRow]),
    WsEvent.METRICS_HEARTBEAT: TypeAdapter(Heartbeat),
    WsEvent.ERROR: TypeAdapter(Notice),
}

#: Frames a client may send: joining a seller's dashboard names the seller (ignored by a
#: single-shop server, accepted for the shop's existing dashboard).
CLIENT_EVENTS: Final = frozenset({WsEvent.JOIN_SELLER_DASHBOARD})


def frame_data(event: WsEvent, data: Any) -> Any:
    """``data`` (models or plain JSON values) as the wire carries it (camelCase, JSON types)."""
    return FRAME_DATA[event].dump_python(data, mode="json", by_alias=True)


def encode_frame(event: WsEvent, data: Any) -> str:
    """One frame as WebSocket text."""
    return json.dumps(
        {"event": event.value, "data": frame_data(event, data)}, separators=(",", ":")
    )


def validate_frame(text: str) -> tuple[WsEvent, Any]:
    """Parse a frame strictly against its model (what tests check every pushed frame with).

    Raises ``ValueError`` (pydantic's ``ValidationError`` included) when the frame's
    name is unknown or its data does not match. Stricter than the models' defaults:
    every field must be present and none other (the server always sends all of them;
    a key the contract does not know is drift).
    """
    message = json.loads(text)
    if not isinstance(message, dict) or set(message) != {"event", "data"}:
        raise ValueError(f"not an {{event, data}} frame: {text[:200]}")
    event = WsEvent(message["event"])
    if event not in FRAME_DATA:
        raise ValueError(f"{event} is a frame clients send, not one the server pushes")
    data = message["data"]
    value = FRAME_DATA[event].validate_python(data)
    for model, body in _bodies(value, data):
        _exact_keys(model, body)
    return event, value


def _bodies(value: Any, data: Any) -> list[tuple[type[BaseModel], Any]]:
    if isinstance(value, BaseModel):
        return [(type(value), data)]
    if isinstance(value, list):
        return [(type(v), d) for v, d in zip(value, data, strict=True) if isinstance(v, BaseModel)]
    return []


def _exact_keys(model: type[BaseModel], body: Any) -> None:
    expected = {field.alias or name for name, field in model.model_fields.items()}
    got = set(body)
    if got != expected:
        raise ValueError(
            f"{model.__name__}: missing {sorted(expected - got)}, unknown {sorted(got - expected)}"
        )
