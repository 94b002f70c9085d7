"""Ingestion endpoints over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t
from tests.api.conftest import row_counts, rows
from tests.api.journeys import P, metrics, nested_error, post, start, visit
from tests.support import LiveServer


def test_session_start_without_body_returns_uuid(client: httpx.Client, db: Engine) -> None:
    """session/start with the client's empty JSON POST creates a live session."""
    sid = start(client)
    assert str(uuid.UUID(sid)) == sid
    [row] = rows(db, sessions_t)
    assert row.session_id == sid
    assert row.is_active is True
    assert row.email is None and row.current_page_type is None


def test_session_start_with_contact_stores_it(client: httpx.Client, db: Engine) -> None:
    """A logged-in customer's userId, email and phone are stored on the session."""
    sid = start(client, userId=42, email="ada@example.com", phone="+44 20 7946 0000")
    [row] = rows(db, sessions_t)
    assert (row.session_id, row.user_id, row.email, row.phone) == (
        sid, "42", "ada@example.com", "+44 20 7946 0000"
    )
    assert row.ip_address == "127.0.0.0"  # anonymised /24 by default
    assert row.user_agent.startswith("python-httpx/")


def test_page_visits_close_previous_with_duration(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """Each page visit closes the previous one with its duration and moves the session."""
    sid = start(client)
    visit(client, sid, "homepage")
    server.clock.advance(12.5)
    visit(client, sid, "category", "electronics")
    server.clock.advance(3)
    visit(client, sid, "offer", "black-friday")
    first, second, third = rows(db, visits_t)
    assert (first.page_type, first.duration_seconds, first.is_active) == ("homepage", 12.5, False)
    assert (second.page_identifier, second.duration_seconds) == ("electronics", 3.0)
    assert third.is_active is True and third.exited_at is None
    assert third.page_url == "https://shop.test/offer"
    [session] = rows(db, sessions_t)
    assert (session.current_page_type, session.current_page_identifier) == (
        "offer", "black-friday"
    )


def test_unknown_well_formed_session_id_creates_session(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """A session id the client invented locally (uuidv4) is accepted and created."""
    sid = str(uuid.uuid4())
    visit(client, sid, "product", "sku-1")
    [row] = rows(db, sessions_t)
    assert row.session_id == sid and row.current_page_type == "product"
    assert metrics(client, server.auth)["product"] == 1


def test_checkout_payment_flow_and_retries_keep_every_error(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """Checkout, payment, two errors (nested and flat form) and success: nothing overwritten."""
    sid = start(client, email="bob@example.com", phone="555-0100")
    items = [{"id": "tv-55", "name": "TV 55\"", "price": 499.99, "quantity": 1},
             {"id": "hdmi", "name": "HDMI cable", "price": 9.99, "quantity": 2}]
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": items,
                                          "totalAmount": 519.97, "paymentMethod": "card"})
    post(client, "track/payment-start", {"sessionId": sid})
    post(client, "track/payment-error",
         nested_error(sid, "card_declined", "Your card was declined"))
    server.clock.advance(20)
    post(client, "track/payment-start", {"sessionId": sid, "paymentMethod": "paypal"})
    post(client, "track/payment-error", {"sessionId": sid, "errorCode": "processing_error",
                                         "errorMessage": "Gateway timeout",
                                         "errorDetails": {"retryable": True}})
    server.clock.advance(20)
    post(client, "track/payment-success", {"sessionId": sid})

    [checkout] = rows(db, checkouts_t)
    assert checkout.status == "completed"
    assert checkout.total_amount == Decimal("519.97")
    assert checkout.checkout_items == items
    assert (checkout.email, checkout.phone, checkout.error_count) == (
        "bob@example.com", "555-0100", 2
    )
    assert checkout.payment_method == "paypal"
    first, second = rows(db, errors_t)
    assert (first.attempt, first.error_code, first.error_message) == (
        1, "card_declined", "Your card was declined"
    )
    assert first.error_details["errorDetails"] == {"gateway": "stripe",
                                                   "declineCode": "card_declined"}
    assert first.error_details["url"] == "https://shop.test/payment"
    assert first.page_url == "https://shop.test/payment"
    assert (first.amount, first.payment_method) == (Decimal("519.97"), "card")
    assert (second.attempt, second.error_code, second.error_message) == (
        2, "processing_error", "Gateway timeout"
    )
    assert second.error_details == {"errorCode": "processing_error",
                                    "errorMessage": "Gateway timeout",
                                    "errorDetails": {"retryable": True}}
    assert second.payment_method == "paypal"
    m = metrics(client, server.auth)
    assert m["paymentErrorsLastHour"] == 2
    assert m["paymentSuccessesLastHour"] == 1
    assert m["paymentSuccessRate"] == 1.0


def test_js_float_amount_is_stored_exactly(client: httpx.Client, db: Engine) -> None:
    """A JS float sum such as 59.970000000000006 is stored as the exact 59.97."""
    sid = start(client)
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [],
                                          "totalAmount": 59.970000000000006})
    [checkout] = rows(db, checkouts_t)
    assert checkout.total_amount == Decimal("59.97")


def test_session_end_as_beacon_blob_any_content_type(
    client: httpx.Client, server: LiveServer
) -> None:
    """session/end is accepted as a sendBeacon blob whatever its content type."""
    for content_type in ("application/json", "text/plain;charset=UTF-8", None):
        sid = start(client)
        visit(client, sid, "homepage")
        assert metrics(client, server.auth)["homepage"] == 1
        headers = {"Content-Type": content_type} if content_type else {}
        body = json.dumps({"sessionId": sid}).encode()
        response = client.post(f"{P}/session/end", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text)
        assert response.json() == {"success": True}
        assert metrics(client, server.auth)["homepage"] == 0


def test_heartbeat_keeps_session_live(client: httpx.Client, server: LiveServer) -> None:
    """Heartbeats every 30 s keep a session live past the 90 s window; silence ends it."""
    sid = start(client)
    visit(client, sid, "homepage")
    for _ in range(4):
        server.clock.advance(30)
        post(client, "session/heartbeat", {"sessionId": sid})
    assert metrics(client, server.auth)["homepage"] == 1
    server.clock.advance(91)
    m = metrics(client, server.auth)
    assert m["homepage"] == 0 and m["liveSessions"] == 0


def test_timed_out_session_is_ended_and_revived(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """Cleanup ends an idle session at its last activity; a later event revives it."""
    sid = start(client)
    visit(client, sid, "category", "shoes")
    server.clock.advance(40)
    post(client, "session/heartbeat", {"sessionId": sid})
    server.clock.advance(31 * 60)
    response = client.post(f"{P}/cleanup-sessions", headers=server.auth)
    assert response.json() == {"success": True, "ended": 1}
    [session] = rows(db, sessions_t)
    [open_visit] = rows(db, visits_t)
    assert session.is_active is False
    assert session.ended_at == session.last_activity
    assert open_visit.is_active is False and open_visit.duration_seconds == 40.0
    # A second cleanup has nothing left to do.
    assert client.post(f"{P}/cleanup-sessions", headers=server.auth).json()["ended"] == 0

    visit(client, sid, "homepage")
    [session] = rows(db, sessions_t)
    assert session.is_active is True and session.ended_at is None
    assert metrics(client, server.auth)["homepage"] == 1


def test_repeated_event_id_changes_nothing(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """A retried event with the same eventId is answered but stored once."""
    sid = start(client)
    body = {"sessionId": sid, "pageType": "homepage", "eventId": "evt-1"}
    for _ in range(3):
        assert client.post(f"{P}/track/page-visit", json=body).json() == {"success": True}
    error = nested_error(sid, "card_declined", "Declined") | {"eventId": "evt-2"}
    for _ in range(2):
        post(client, "track/payment-error", error)
    assert len(rows(db, visits_t)) == 1
    assert len(rows(db, errors_t)) == 1
    assert len(rows(db, events_t, events_t.c.event_id == "evt-1")) == 1
    assert metrics(client, server.auth)["paymentErrorsLastHour"] == 1


def test_repeated_session_start_event_id_returns_same_session(
    client: httpx.Client, db: Engine
) -> None:
    """A retried session/start with the same eventId answers the first session's id."""
    first = client.post(f"{P}/session/start", json={"eventId": "start-1"}).json()
    again = client.post(f"{P}/session/start", json={"eventId": "start-1"}).json()
    assert first == again
    assert len(rows(db, sessions_t)) == 1


def test_batch_endpoint_applies_in_order(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """POST /events applies many events in order in one request, duplicates counted."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        {"type": "page-visit", "sessionId": a, "pageType": "homepage", "eventId": "b1"},
        {"type": "page-visit", "sessionId": a, "pageType": "category",
         "pageIdentifier": "toys", "eventId": "b2"},
        {"type": "page-visit", "sessionId": b, "pageType": "offer", "pageIdentifier": "o1"},
        {"type": "session-heartbeat", "sessionId": b},
        {"type": "page-visit", "sessionId": a, "pageType": "homepage", "eventId": "b1"},
    ]
    response = client.post(f"{P}/events", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 4, "duplicates": 1}
    m = metrics(client, server.auth)
    assert m["categories"] == {"toys": 1} and m["offers"] == {"o1": 1}
    assert m["liveSessions"] == 2
    assert len(rows(db, visits_t)) == 3


def test_batch_endpoint_rejects_whole_request_on_one_bad_item(
    client: httpx.Client, db: Engine
) -> None:
    """One invalid item rejects the batch with its index named, and nothing is written."""
    sid = str(uuid.uuid4())
    events = [
        {"type": "page-visit", "sessionId": sid, "pageType": "homepage"},
        {"type": "page-visit", "sessionId": sid, "pageType": "moon landing!"},
        {"type": "teleport", "sessionId": sid},
    ]
    response = client.post(f"{P}/events", json={"events": events})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "events[1].pageType"
    assert body["errors"][1] == {
        "field": "events[2].type",
        "message": "must be one of session-start, session-heartbeat, page-visit, checkout-start, "
        "payment-start, payment-error, payment-success, session-end, event",
    }
    assert body["detail"].startswith("events[1].pageType: must be a slug")
    assert all(n == 0 for n in row_counts(db).values())


def test_unknown_fields_are_ignored(client: httpx.Client, db: Engine) -> None:
    """Extra fields the client may add are ignored, not rejected."""
    sid = start(client)
    visit(client, sid, "search", referrer="https://google.com", screen={"w": 1920})
    [row] = rows(db, visits_t)
    assert row.page_type == "search"


def test_single_event_answers_are_plain_and_carry_cors_once(
    client: httpx.Client, db: Engine
) -> None:
    """The single-event routes (answered by the fast path) answer as FastAPI did."""
    sid = start(client)
    for page in ("homepage", "checkout", "payment"):
        response = client.post(f"{P}/track/page-visit",
                               json={"sessionId": sid, "pageType": page},
                               headers={"Origin": "http://shop.test"})
        assert response.status_code == 200
        assert response.content == b'{"success":true}'
        assert response.headers["content-type"] == "application/json"
        assert response.headers.get_list("access-control-allow-origin") == ["http://shop.test"]
    assert [r.page_type for r in rows(db, visits_t)] == ["homepage", "checkout", "payment"]
    paths = client.get("/openapi.json").json()["paths"]
    assert "PageVisitIn" in json.dumps(paths[f"{P}/track/page-visit"])


def _cors(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items()
                  if k.startswith("access-control-") or k == "vary")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("origin", [None, "http://shop.test", "http://elsewhere.test"])
def test_answers_before_and_behind_the_front_door_carry_the_same_cors_headers(
    client: httpx.Client, server: LiveServer, origin: str | None
) -> None:
    """A valid event (answered by the front door, outside the CORS middleware), a refused
    oversize body (front door too) and an invalid event (the route, behind the CORS
    middleware): whatever the Origin, the browser sees the same CORS headers."""
    sid = start(client)
    headers = {} if origin is None else {"Origin": origin}
    fast = client.post(f"{P}/track/page-visit", headers=headers,
                       json={"sessionId": sid, "pageType": "homepage"})
    routed = client.post(f"{P}/track/page-visit", headers=headers,
                         json={"sessionId": sid, "pageType": "no spaces allowed"})
    limit = server.state.settings.max_body_bytes
    oversize = client.post(f"{P}/track/page-visit", headers=headers,
                           content=b"{" + b" " * limit + b"}")
    assert (fast.status_code, routed.status_code, oversize.status_code) == (200, 422, 413)
    assert _cors(fast) == _cors(routed) == _cors(oversize)
    if origin == "http://shop.test":
        assert ("access-control-allow-origin", origin) in _cors(fast)
    else:
        assert "access-control-allow-origin" not in dict(_cors(fast))


REFUSED_URL = "https://shop.test/refused-by-the-database"


@contextlib.contextmanager
def refusing_trigger(db: Engine) -> Iterator[None]:
    """A trigger refusing page visits to REFUSED_URL: a refusal validation cannot see."""
    if db.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION nm_test_refuse() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.page_url = '{REFUSED_URL}' THEN RAISE EXCEPTION 'refused by test' "
            "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER nm_test_refuse BEFORE INSERT ON page_visits "
            "FOR EACH ROW EXECUTE FUNCTION nm_test_refuse()",
        ]
        drop = ["DROP TRIGGER nm_test_refuse ON page_visits", "DROP FUNCTION nm_test_refuse()"]
    else:
        create = [
            "CREATE TRIGGER nm_test_refuse BEFORE INSERT ON page_visits "
            f"WHEN NEW.page_url = '{REFUSED_URL}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        ]
        drop = ["DROP TRIGGER nm_test_refuse"]
    with db.begin() as conn:
        for statement in create:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with db.begin() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement)


def test_batch_with_refused_event_stores_nothing_and_names_it(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """A batch holding an event the database refuses: 422 naming it, nothing stored.

    Requests sent at the same time, possibly committed in the same group commit, are
    stored; a retry without the refused event counts each event once.
    """
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    good = [
        {"type": "page-visit", "sessionId": a, "pageType": "homepage"},
        {"type": "page-visit", "sessionId": c, "pageType": "search"},
    ]
    bad = {"type": "page-visit", "sessionId": b, "pageType": "homepage", "pageUrl": REFUSED_URL}
    others = [str(uuid.uuid4()) for _ in range(8)]
    with refusing_trigger(db):
        before = row_counts(db)
        with ThreadPoolExecutor(len(others) + 1) as pool:
            refused = pool.submit(
                client.post, f"{P}/events", json={"events": [good[0], bad, good[1]]}
            )
            singles = [
                pool.submit(client.post, f"{P}/track/page-visit",
                            json={"sessionId": sid, "pageType": "offer", "pageIdentifier": "x"})
                for sid in others
            ]
            response = refused.result()
            assert [s.result().status_code for s in singles] == [200] * len(others)
        assert response.status_code == 422
        assert response.json() == {
            "detail": "events[1]: the event was refused by the database",
            "errors": [
                {"field": "events[1]", "message": "the event was refused by the database"}
            ],
        }
        after = row_counts(db)
        assert after["page_visits"] - before["page_visits"] == len(others)
        assert sorted(r.session_id for r in rows(db, visits_t)) == sorted(others)
        retry = client.post(f"{P}/events", json={"events": good})
        assert retry.status_code == 200
        assert retry.json() == {"success": True, "accepted": 2, "duplicates": 0}
    assert sorted(r.session_id for r in rows(db, visits_t)) == sorted([*others, a, c])


def test_single_event_refused_by_database_is_422(client: httpx.Client, db: Engine) -> None:
    """A single event the database refuses gets 422 and changes nothing; others go on."""
    sid = str(uuid.uuid4())
    with refusing_trigger(db):
        before = row_counts(db)
        response = client.post(f"{P}/track/page-visit",
                               json={"sessionId": sid, "pageType": "homepage",
                                     "pageUrl": REFUSED_URL})
        assert response.status_code == 422
        assert response.json() == {"detail": "the event was refused by the database"}
        assert row_counts(db) == before
    ok = client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
    assert ok.status_code == 200
    assert ok.json() == {"success": True}
