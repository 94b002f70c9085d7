"""The wire contract's models: frames round trip, strict frame checks, lenient reading, registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from nilemetrics.protocol.bodies import SessionEventIn, SessionStartIn
from nilemetrics.protocol.frames import FRAME_DATA, encode_frame, validate_frame
from nilemetrics.protocol.lenient import lenient
from nilemetrics.protocol.names import EventType, WsEvent
from nilemetrics.protocol.pushed import (
    Heartbeat,
    LiveMetrics,
    Notice,
    PageSessionOut,
    PaymentErrorRow,
)
from nilemetrics.protocol.registry import EVENTS

AT = datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
METRICS = LiveMetrics(
    homepage=2, categories={"shoes": 3, "bags": 1}, payment_error=1,
    pages={"category": 4, "homepage": 2, "payment_error": 1}, live_sessions=7,
    payment_success_rate=0.75, live_window_seconds=90.0, last_updated=AT,
)
ERROR_ROW = PaymentErrorRow(
    id=1, session_id="s-1", attempt=2, email="a@example.com", checkout_items=[{"sku": "tea"}],
    item_count=1, total_amount=84.2, payment_method="ziina", payment_error_at=AT,
    error_code="declined", error_details={"raw": [1, 2]}, checkout_status="failed",
)


def frame_dict(event: WsEvent, data: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_frame(event, data))
    return decoded


@pytest.mark.parametrize(
    ("event", "data"),
    [
        (WsEvent.METRICS_UPDATE, METRICS),
        (WsEvent.PAYMENT_ERRORS_UPDATE, [ERROR_ROW, PaymentErrorRow(id=2)]),
        (WsEvent.PAYMENT_ERRORS_UPDATE, []),
        (WsEvent.METRICS_HEARTBEAT, Heartbeat(timestamp=AT, interval_seconds=5.0)),
        (WsEvent.ERROR, Notice(message="unknown frame")),
    ],
)
def test_every_server_frame_round_trips(event: WsEvent, data: Any) -> None:
    """encode_frame then validate_frame gives back the same event and the same models."""
    assert validate_frame(encode_frame(event, data)) == (event, data)


def test_a_metrics_frame_carries_camel_case_json() -> None:
    """The wire names are camelCase; times are ISO 8601 with Z; rates JSON numbers."""
    frame = frame_dict(WsEvent.METRICS_UPDATE, METRICS)
    assert frame["event"] == "metrics-update"
    data = frame["data"]
    assert (data["paymentError"], data["liveSessions"], data["paymentSuccessRate"]) == (1, 7, 0.75)
    assert (data["lastUpdated"], data["categories"]) == ("2025-03-01T12:00:00.500000Z",
                                                          {"shoes": 3, "bags": 1})
    assert "payment_error" not in data


def test_payment_error_rows_keep_their_snake_case_names() -> None:
    """Payment-error rows stay snake_case, as the shop's existing dashboard reads them."""
    row = frame_dict(WsEvent.PAYMENT_ERRORS_UPDATE, [ERROR_ROW])["data"][0]
    assert (row["total_amount"], row["payment_method"], row["payment_error_at"]) == (
        84.2, "ziina", "2025-03-01T12:00:00.500000Z"
    )


def test_validate_frame_refuses_a_missing_key() -> None:
    """A body without one of its fields is drift: refused, naming the field."""
    frame = frame_dict(WsEvent.METRICS_UPDATE, METRICS)
    del frame["data"]["homepage"]
    with pytest.raises(ValueError, match=r"^LiveMetrics: missing \['homepage'\], unknown \[\]$"):
        validate_frame(json.dumps(frame))


def test_validate_frame_refuses_an_unknown_key() -> None:
    """A key the contract does not know is refused, naming it."""
    frame = frame_dict(WsEvent.METRICS_HEARTBEAT, Heartbeat())
    frame["data"]["uptime"] = 5
    with pytest.raises(ValueError, match=r"^Heartbeat: missing \[\], unknown \['uptime'\]$"):
        validate_frame(json.dumps(frame))


def test_validate_frame_checks_every_row_of_a_list() -> None:
    """One row of payment errors with an extra key fails the frame."""
    frame = frame_dict(WsEvent.PAYMENT_ERRORS_UPDATE, [ERROR_ROW, ERROR_ROW])
    frame["data"][1]["card_number"] = "x"
    with pytest.raises(ValueError, match=r"unknown \['card_number'\]"):
        validate_frame(json.dumps(frame))


def test_validate_frame_refuses_a_wrong_type() -> None:
    """A negative count or a count sent as text is refused (counts are strict integers)."""
    for bad in (-1, "3"):
        frame = frame_dict(WsEvent.METRICS_UPDATE, METRICS)
        frame["data"]["liveSessions"] = bad
        with pytest.raises(ValueError, match="liveSessions"):
            validate_frame(json.dumps(frame))


@pytest.mark.parametrize(
    "text",
    [
        '{"event": "metrics-update"}',
        '{"event": "metrics-update", "data": {}, "extra": 1}',
        '["metrics-update", {}]',
        '{"event": "metrics-upgrade", "data": {}}',
        '{"event": "join-seller-dashboard", "data": {}}',
    ],
)
def test_validate_frame_refuses_what_is_not_a_server_frame(text: str) -> None:
    """Not {event, data}, an unknown name or a client-only name: a ValueError."""
    with pytest.raises(ValueError):
        validate_frame(text)


def test_every_server_frame_name_has_a_model() -> None:
    """Each frame the server pushes has its data model; the client-only one has none."""
    assert set(FRAME_DATA) == set(WsEvent) - {WsEvent.JOIN_SELLER_DASHBOARD}


def test_lenient_keeps_good_fields_and_defaults_bad_ones() -> None:
    """A reader keeps what fits; an odd value takes its default; a bad nested map empties."""
    metrics = lenient(LiveMetrics, {
        "homepage": 3, "product": "lots", "liveSessions": -4, "categories": {"a": 1, "b": -1},
        "offers": {"o": 2}, "paymentSuccessRate": 0.5, "lastUpdated": "yesterday",
        "somethingNew": True,
    })
    assert metrics == LiveMetrics(homepage=3, offers={"o": 2}, payment_success_rate=0.5)


def test_lenient_of_an_empty_or_all_bad_body_is_the_defaults() -> None:
    """Nothing usable gives the model's defaults, never an exception."""
    assert lenient(LiveMetrics, {}) == LiveMetrics()
    assert lenient(PageSessionOut, {"sessionId": 5, "pageType": [], "secondsOnPage": "x"}) == (
        PageSessionOut()
    )


def test_lenient_reads_a_payment_error_row_with_one_bad_value() -> None:
    """A row whose amount is text keeps its other fields."""
    row = lenient(PaymentErrorRow, {"id": 4, "total_amount": "a lot", "payment_method": "ziina"})
    assert (row.id, row.total_amount, row.payment_method) == (4, None, "ziina")


def test_every_event_type_has_one_registry_entry() -> None:
    """The registry names every EventType once, each under its own kind, with its own route."""
    assert list(EVENTS) == [
        EventType.PAGE_VISIT, EventType.SESSION_HEARTBEAT, EventType.SESSION_START,
        EventType.SESSION_END, EventType.CHECKOUT_START, EventType.PAYMENT_START,
        EventType.PAYMENT_ERROR, EventType.PAYMENT_SUCCESS, EventType.EVENT,
    ]
    assert set(EVENTS) == set(EventType)
    assert all(spec.kind == kind for kind, spec in EVENTS.items())
    paths = [spec.path for spec in EVENTS.values()]
    assert len(set(paths)) == len(paths) and all(p.startswith("/") for p in paths)


def test_every_event_body_names_its_session() -> None:
    """Each body model has sessionId (only session-start's is optional)."""
    for kind, spec in EVENTS.items():
        assert issubclass(spec.body, SessionEventIn | SessionStartIn), kind
        field = spec.body.model_fields["session_id"]
        assert field.alias == "sessionId"
        assert field.is_required() is (kind != EventType.SESSION_START), kind


def test_custom_event_parses_the_same_from_bytes_as_from_json_objects() -> None:
    """track/event is on the fast path: JSON bytes give exactly the model FastAPI's
    parse-then-validate gives, for every kind of property value (and the same refusals)."""
    import json

    from nilemetrics.protocol.bodies import CustomEventIn

    sid = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
    bodies = [
        {"name": "add_to_cart", "properties": {"sku": "a\u0000b", "n": 2, "price": 9.5,
                                               "big": 10**20, "ok": True, "zero": 0.0}},
        {"name": "experiment", "properties": {"experiment": "x", "variant": "b"}},
        {"name": "click", "properties": {"path": "a#b", "x": 0, "y": 9}},
        {"name": "x", "properties": {"a": None}},
        {"name": "click", "properties": {"path": "a", "x": True, "y": 1}},
        {"name": "x", "properties": {"a": 1e308 * 10}},
    ]
    for body in bodies:
        raw = json.dumps({"sessionId": sid, **body})
        try:
            from_bytes: object = CustomEventIn.model_validate_json(raw)
        except ValueError as exc:
            from_bytes = [(e["loc"], e["msg"]) for e in exc.errors()]  # type: ignore[attr-defined]
        try:
            from_objects: object = CustomEventIn.model_validate(json.loads(raw))
        except ValueError as exc:
            from_objects = [(e["loc"], e["msg"]) for e in exc.errors()]  # type: ignore[attr-defined]
        assert from_bytes == from_objects, body
