"""`DELETE /api/metrics/subjects` over real HTTP: erasure from the dashboard's side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import audit_t, checkouts_t, events_t, metadata
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
        # Someone else's error naming her address (a support note): scrubbed, not deleted.
        track(client, "track/payment-error", {"sessionId": other, "errorCode": "card_declined",
                                              "errorMessage": "card of a friend",
                                              "errorDetails": {"payer": EMAIL.upper()}})
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
        assert errors[0]["error_message"] == "card of a friend"
        assert errors[0]["error_details"]["errorDetails"] == {"payer": "[erased]"}
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


def erase(client: httpx.Client, server: LiveServer, **selector: str) -> dict[str, Any]:
    """DELETE /subjects with the selector in the JSON body; expect success."""
    response = client.request("DELETE", f"{P}/subjects", json=selector, headers=server.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def raw_rows(url: str, session_id: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Every row of one session in every table, exactly as the driver returns it."""
    engine = make_engine(url)
    out = []
    with engine.connect() as conn:
        for table in ("user_sessions", "page_visits", "checkout_sessions", "payment_errors",
                      "events"):
            # JSON as its stored text: byte-for-byte, not re-serialised.
            for row in conn.exec_driver_sql(
                f"SELECT * FROM {table} WHERE session_id = '{session_id}' ORDER BY id"
            ):
                out.append((table, tuple(str(v) for v in row)))
    engine.dispose()
    return out


def shopper(client: httpx.Client, contact: dict[str, str], *, text: str) -> str:
    """A session with a page, a basket, a payment error and free text made of ``text``."""
    sid = start(client, contact)
    track(client, "track/page-visit", {"sessionId": sid, "pageType": "offer",
                                       "pageIdentifier": text,
                                       "pageUrl": f"https://shop.test/{text}?ref={text}"})
    track(client, "track/checkout-start", {
        "sessionId": sid, "totalAmount": 10, "paymentMethod": "card",
        "checkoutItems": [{"id": text, "name": f"The {text} edition", "qty": "0"}]})
    track(client, "track/payment-error", {"sessionId": sid, "errorDetails": {
        "errorCode": "card_declined", "errorMessage": "The card was declined",
        "errorDetails": {"note": f"{text} 0 e"}, "url": f"https://shop.test/pay/{text}"}})
    return sid


def test_erasure_leaves_other_peoples_rows_byte_for_byte(server: LiveServer) -> None:
    """A selector inside others' data ("e", a stored phone "0") changes only its own person."""
    url = server.settings.effective_database_url()
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        tiny = shopper(client, {"email": "e", "phone": "0"}, text="e0")
        zero = shopper(client, {"email": "zero@example.com", "phone": "0"}, text="zero")
        bob = shopper(client, {"email": "bob@example.com", "phone": "+49 170 0000000"},
                      text="declined-0-e")
        bob_before = raw_rows(url, bob)
        zero_before = raw_rows(url, zero)
        # One letter: its own session goes, nobody else's text is touched.
        body = erase(client, server, email="E")
        assert body["sessions"] == 1 and body["scrubbed"] == dict.fromkeys(body["scrubbed"], 0)
        assert raw_rows(url, tiny) == []
        assert raw_rows(url, bob) == bob_before
        # The placeholder phone "0" stored for zero@ is not followed to other sessions,
        # nor looked for in other people's rows.
        assert raw_rows(url, zero) == zero_before
        body = erase(client, server, email="zero@example.com")
        assert body["sessions"] == 1 and body["scrubbed"] == dict.fromkeys(body["scrubbed"], 0)
        assert raw_rows(url, zero) == []
        assert raw_rows(url, bob) == bob_before


def test_erasure_scrubs_whole_values_only_in_others_json(server: LiveServer) -> None:
    """In another person's JSON only a string that is exactly the email (any case) is replaced."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        start(client, {"email": EMAIL})
        other = start(client, None)
        track(client, "track/checkout-start", {
            "sessionId": other, "totalAmount": 5, "checkoutItems": [
                {"giftFor": EMAIL.upper(), "note": f"for {EMAIL}", EMAIL: "key"}]})
        body = erase(client, server, email=EMAIL)
        assert body["scrubbed"]["checkout_sessions"] == 1
    engine = make_engine(server.settings.effective_database_url())
    with engine.connect() as conn:
        items = conn.execute(
            select(checkouts_t.c.checkout_items).where(checkouts_t.c.session_id == other)
        ).scalar_one()
    engine.dispose()
    assert items == [{"giftFor": "[erased]", "note": f"for {EMAIL}", "[erased]": "key"}]


def test_erasure_by_email_follows_the_person_across_sessions(server: LiveServer) -> None:
    """Found by email in session A, the phone stored in session B (linked by user id) goes too."""
    phone = "+44 7700 900123"
    url = server.settings.effective_database_url()
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        a = start(client, {"email": EMAIL, "userId": "u-77"})
        b = start(client, {"userId": "u-77", "phone": phone})
        c = start(client, {"phone": phone})
        track(client, "track/checkout-start", {
            "sessionId": c, "totalAmount": 5, "checkoutItems": [{"id": 1}]})
        stranger = start(client, {"email": "other@example.com", "userId": "u-78"})
        before = raw_rows(url, stranger)
        body = erase(client, server, email=EMAIL)
        assert body["sessions"] == 3
        assert body["deleted"]["user_sessions"] == 3
        assert body["deleted"]["checkout_sessions"] == 1
        for sid in (a, b, c):
            assert raw_rows(url, sid) == []
        assert raw_rows(url, stranger) == before
    assert phone.lower() not in everything(url)
    assert "u-77" not in everything(url)


def test_erasure_selector_in_body_never_reaches_the_log(server: LiveServer) -> None:
    """The body form keeps the email out of URLs; the old query form still works, masked."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "nilemetrics")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            start(client, {"email": "victim@example.org", "phone": "+1 555 0100 777"})
            start(client, {"phone": "+1 555 0100 888"})
            assert erase(client, server, email="victim@example.org")["sessions"] == 1
            old = client.delete(f"{P}/subjects", params={"phone": "+1 555 0100 888"},
                                headers=server.auth)
            assert old.status_code == 200, old.text
            assert old.json()["sessions"] == 1
            assert old.headers["deprecation"] == "@1796083200"
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    text = "\n".join(records)
    assert "DELETE /api/metrics/subjects" in text
    assert "/api/metrics/subjects?phone=***" in text
    for secret in ("victim", "example.org", "555", "0100"):
        assert secret not in text


def test_erasure_body_and_query_problems(server: LiveServer) -> None:
    """Both forms at once, an unknown field or no selector: a 422 that says which."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        both = client.request("DELETE", f"{P}/subjects", params={"email": "a@b.c"},
                              json={"email": "a@b.c"}, headers=server.auth)
        assert both.status_code == 422
        assert both.json()["detail"] == (
            "give the person in the JSON body or in the query string, not both"
        )
        empty = client.request("DELETE", f"{P}/subjects", json={}, headers=server.auth)
        assert empty.status_code == 422
        assert empty.json()["detail"] == (
            "name the person: give an email, phone, user id or session id"
        )
        wrong = client.request("DELETE", f"{P}/subjects", json={"email": 5},
                               headers=server.auth)
        assert wrong.status_code == 422
        assert wrong.json()["detail"] == "email: Input should be a valid string"
