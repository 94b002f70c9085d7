"""`DELETE /api/metrics/subjects` over real HTTP: erasure from the dashboard's side."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import audit_t, events_t, metadata
from tests.support import LiveServer

P = "/api/metrics"
EMAIL = "jane.doe@example.com"


def start(client: httpx.Client, body: dict[str, str] | None) -> str:
    """Start a session the way the shop's client does; return its id."""
    response = client.post(f"{P}/session/start", json=body) if body else client.post(
        f"{P}/session/start", content=b"", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def track(client: httpx.Client, path: str, body: dict[str, object]) -> None:
    """POST one tracking event and expect success."""
    response = client.post(f"{P}/{path}", json=body)
    assert response.status_code == 200, response.text


def everything(url: str) -> str:
    """All rows of all tables as lowercase text."""
    engine = make_engine(url)
    with engine.connect() as conn:
        text = "\n".join(
            repr(tuple(row)) for table in metadata.sorted_tables
            for row in conn.execute(select(table))
        )
    engine.dispose()
    return text.lower()


def test_delete_subject_erases_and_live_numbers_drop(server: LiveServer) -> None:
    """The endpoint erases the person, answers counts, and live-metrics stop counting them."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        jane = start(client, {"email": EMAIL, "userId": "42"})
        other = start(client, None)
        track(client, "track/page-visit", {"sessionId": jane, "pageType": "category",
                                           "pageIdentifier": "shoes"})
        track(client, "track/page-visit", {"sessionId": other, "pageType": "homepage"})
        track(client, "track/checkout-start", {
            "sessionId": jane, "totalAmount": 59.97, "paymentMethod": "card",
            "checkoutItems": [{"id": 1, "name": "Shoes", "price": 59.97, "quantity": 1}]})
        track(client, "track/payment-error", {"sessionId": jane, "errorDetails": {
            "errorCode": "card_declined", "errorMessage": "Your card was declined.",
            "errorDetails": {"receipt": EMAIL}, "timestamp": "2026-11-24T12:00:00Z",
            "userAgent": "Mozilla/5.0", "url": "https://shop.example/pay"}})
        # Someone else's error quoting her address (a support note): scrubbed, not deleted.
        track(client, "track/payment-error", {"sessionId": other, "errorCode": "card_declined",
                                              "errorMessage": f"card of {EMAIL.upper()}"})
        live = client.get(f"{P}/live-metrics", headers=server.auth).json()
        assert live["liveSessions"] == 2 and live["categories"] == {"shoes": 1}

        assert client.delete(f"{P}/subjects", params={"email": EMAIL}).status_code == 401
        missing = client.delete(f"{P}/subjects", headers=server.auth)
        assert missing.status_code == 422
        assert missing.json()["detail"] == (
            "name the person: give an email, phone, user id or session id"
        )

        # How many log entries the server keeps per event is its business: count them.
        engine = make_engine(server.settings.effective_database_url())
        with engine.connect() as conn:
            logged = conn.execute(
                select(func.count()).select_from(events_t).where(events_t.c.session_id == jane)
            ).scalar_one()
        engine.dispose()
        assert logged >= 3

        response = client.delete(f"{P}/subjects", params={"email": EMAIL}, headers=server.auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert body["sessions"] == 1
        assert body["deleted"] == {"page_visits": 1, "payment_errors": 1,
                                   "checkout_sessions": 1, "events": logged, "user_sessions": 1}
        assert body["scrubbed"]["payment_errors"] == 1
        assert body["subjectHash"].startswith("hmac-sha256:")
        live = client.get(f"{P}/live-metrics", headers=server.auth).json()
        assert live["liveSessions"] == 1 and live["categories"] == {}
        errors = client.get(f"{P}/payment-errors", headers=server.auth).json()
        assert [e["session_id"] for e in errors] == [other]
        assert errors[0]["error_message"] == "card of [erased]"
    url = server.settings.effective_database_url()
    assert EMAIL not in everything(url)
    assert other in everything(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        audit = conn.execute(select(audit_t)).one()
        assert conn.execute(select(func.count()).select_from(audit_t)).scalar_one() == 1
    engine.dispose()
    assert audit.details["via"] == "api"
    assert EMAIL not in repr(audit).lower()
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        data = path.read_bytes() + Path(f"{path}-wal").read_bytes()
        assert EMAIL.encode() not in data.lower()
