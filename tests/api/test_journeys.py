"""Customer lookups, journeys and the report over real HTTP (GET /sessions, /sessions/{id},
/report)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, update

from nilemetrics.protocol.report import ReportOut
from nilemetrics.server.tables import checkouts_t
from tests.api.journeys import P, nested_error, post, start, visit
from tests.support import LiveServer

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1")


def lookup(client: httpx.Client, server: LiveServer, **params: str | int) -> httpx.Response:
    """GET /sessions with the token."""
    return client.get(f"{P}/sessions", params=params, headers=server.auth)


def test_sessions_of_a_person_newest_first_exact_matches(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """By email (any case), phone or user id: whole values only, newest first, paginated."""
    first = start(client, email="ann@example.com", userId="u-1")
    visit(client, first, "homepage")
    server.clock.advance(60)
    # The contact only on the checkout row (as the shop's old schema kept it).
    second = start(client)
    visit(client, second, "product", "mug")
    post(client, "track/checkout-start", {"sessionId": second, "totalAmount": 9,
                                          "checkoutItems": [{"name": "Mug"}]})
    with db.begin() as conn:
        conn.execute(update(checkouts_t).where(checkouts_t.c.session_id == second)
                     .values(email="Ann@Example.com", phone="+1 555 0100"))
    server.clock.advance(60)
    third = start(client, email="ann@example.com")
    visit(client, third, "search")
    start(client, email="joann@example.com")  # shares a substring: never matched
    start(client, email="ann@example.co")

    answer = lookup(client, server, email="ANN@example.com")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["total"], body["offset"], body["limit"]) == (3, 0, 50)
    assert [s["sessionId"] for s in body["sessions"]] == [third, second, first]
    newest = body["sessions"][0]
    assert newest == {
        "sessionId": third, "userId": None, "email": "ann@example.com", "phone": None,
        "startedAt": "2026-11-24T12:02:00Z", "lastActivity": "2026-11-24T12:02:00Z",
        "endedAt": None, "live": True, "pageType": "search", "pageIdentifier": None,
        "pageVisits": 1, "checkouts": 0, "paymentErrors": 0, "paid": False,
    }
    guest = body["sessions"][1]
    assert (guest["email"], guest["checkouts"], guest["pageVisits"]) == (None, 1, 1)

    page = lookup(client, server, email="ann@example.com", offset=1, limit=1).json()
    assert (page["total"], [s["sessionId"] for s in page["sessions"]]) == (3, [second])
    by_phone = lookup(client, server, phone="+1 555 0100").json()
    assert [s["sessionId"] for s in by_phone["sessions"]] == [second]
    assert lookup(client, server, phone="555 0100").json()["total"] == 0
    by_user = lookup(client, server, userId="u-1").json()
    assert [s["sessionId"] for s in by_user["sessions"]] == [first]
    assert lookup(client, server, email="nobody@example.com").json() == {
        "total": 0, "offset": 0, "limit": 50, "sessions": []}


def test_session_lookup_problems(client: httpx.Client, server: LiveServer) -> None:
    """Two selectors, a person and a page, an empty value, bad paging: 422 naming it."""
    for params, detail in (
        ({"email": "a@b.c", "phone": "1"}, "email/phone: give one of email, phone or userId"),
        ({"email": "a@b.c", "page": "product"},
         "page: give a person (email, phone or userId) or a page, not both"),
        ({"email": " "}, "email: must not be empty"),
        ({}, "page: field required (or give email, phone or userId)"),
    ):
        answer = lookup(client, server, **params)
        assert (answer.status_code, answer.json()["detail"]) == (422, detail)
    for params in ({"email": "a@b.c", "offset": -1}, {"email": "a@b.c", "limit": 0}):
        answer = lookup(client, server, **params)
        assert answer.status_code == 422
        assert answer.json()["detail"].split(":")[0] in params
    assert client.get(f"{P}/sessions", params={"email": "a@b.c"}).status_code == 401


def test_lookup_selector_never_reaches_the_log(server: LiveServer) -> None:
    """The email, phone or user id asked for is masked in the access log."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.DEBUG)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for params in ({"email": "victim@example.org"}, {"phone": "+1 555 0100 777"},
                           {"userId": "secret-user-42"}):
                assert lookup(client, server, **params).status_code == 200
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    text = "\n".join(records)
    assert "/api/metrics/sessions?email=***" in text
    assert "/api/metrics/sessions?userId=***" in text
    for secret in ("victim", "example.org", "555", "secret-user"):
        assert secret not in text


def test_journey_of_a_session(client: httpx.Client, server: LiveServer) -> None:
    """Pages in order with their times, the checkout with each failed attempt, device, exit."""
    sid = client.post(f"{P}/session/start", json={"email": "ann@example.com"},
                      headers={"User-Agent": IPHONE}).json()["sessionId"]
    visit(client, sid, "homepage")
    server.clock.advance(12)
    visit(client, sid, "category", "shoes")
    server.clock.advance(30)
    visit(client, sid, "payment")
    post(client, "track/checkout-start", {"sessionId": sid, "totalAmount": "59.90",
                                          "checkoutItems": [{"name": "Boot"}],
                                          "paymentMethod": "card"})
    server.clock.advance(5)
    post(client, "track/payment-error", nested_error(sid, "card_declined", "Declined"))
    server.clock.advance(5)
    post(client, "track/payment-error", nested_error(sid, "incorrect_cvc", "Wrong CVC"))
    server.clock.advance(8)
    post(client, "session/end", {"sessionId": sid})

    answer = client.get(f"{P}/sessions/{sid}", headers=server.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["browser"], body["device"], body["userAgent"]) == (
        "Safari 17 · iOS", "mobile", IPHONE)
    assert body["totalSeconds"] == 60.0
    assert body["leftOn"] == "payment"
    assert body["session"]["endedAt"] == "2026-11-24T12:01:00Z"
    assert body["session"]["live"] is False
    assert (body["session"]["pageVisits"], body["session"]["paymentErrors"]) == (3, 2)
    assert [(p["pageType"], p["pageIdentifier"], p["enteredAt"], p["secondsOnPage"])
            for p in body["pages"]] == [
        ("homepage", None, "2026-11-24T12:00:00Z", 12.0),
        ("category", "shoes", "2026-11-24T12:00:12Z", 30.0),
        ("payment", None, "2026-11-24T12:00:42Z", 18.0),
    ]
    [checkout] = body["checkouts"]
    assert (checkout["status"], checkout["totalAmount"], checkout["paymentMethod"],
            checkout["itemCount"], checkout["checkoutItems"]) == (
        "failed", 59.9, "card", 1, [{"name": "Boot"}])
    assert [(e["attempt"], e["at"], e["errorCode"], e["errorMessage"])
            for e in checkout["errors"]] == [
        (1, "2026-11-24T12:00:47Z", "card_declined", "Declined"),
        (2, "2026-11-24T12:00:52Z", "incorrect_cvc", "Wrong CVC"),
    ]


def test_journey_of_a_live_session_runs_to_now(client: httpx.Client, server: LiveServer) -> None:
    """The open page counts up to now; a live session has not left anywhere."""
    sid = start(client)
    visit(client, sid, "product", "mug")
    server.clock.advance(20)
    body = client.get(f"{P}/sessions/{sid}", headers=server.auth).json()
    assert body["session"]["live"] is True
    assert (body["totalSeconds"], body["leftOn"], body["checkouts"]) == (20.0, None, [])
    assert [(p["pageType"], p["exitedAt"], p["secondsOnPage"]) for p in body["pages"]] == [
        ("product", None, 20.0)]
    assert body["browser"].startswith("python-httpx")
    assert body["device"] == "desktop"


def test_journey_unknown_or_malformed_id(client: httpx.Client, server: LiveServer) -> None:
    """An unknown session id is a 404 saying so; something not a UUID is a 422."""
    unknown = str(uuid.uuid4())
    missing = client.get(f"{P}/sessions/{unknown}", headers=server.auth)
    assert (missing.status_code, missing.json()) == (404, {"detail": f"no session {unknown}"})
    bad = client.get(f"{P}/sessions/not-a-uuid", headers=server.auth)
    assert (bad.status_code, bad.json()["detail"]) == (
        422, "session_id: not a session id (a UUID)")
    assert client.get(f"{P}/sessions/{unknown}").status_code == 401


def test_report_endpoint_matches_the_cli_implementation(
    client: httpx.Client, server: LiveServer
) -> None:
    """GET /report answers build_report's body over the period, in the ReportOut shape."""
    paid, failed = start(client), start(client)
    for sid in (paid, failed):
        visit(client, sid, "product", "mug")
        server.clock.advance(10)
        post(client, "track/checkout-start", {"sessionId": sid, "totalAmount": 20,
                                              "checkoutItems": [{"name": "Mug"}]})
    post(client, "track/payment-error", nested_error(paid, "card_declined", "Declined"))
    post(client, "track/payment-success", {"sessionId": paid})
    post(client, "track/payment-error", nested_error(failed, "card_declined", "Declined"))
    post(client, "session/end", {"sessionId": failed})
    post(client, "track/event", {"sessionId": paid, "name": "review_written"})
    server.clock.advance(60)

    answer = client.get(f"{P}/report", params={"since": "2026-11-24T11:00:00Z",
                                               "until": "2026-11-24T13:00:00Z"},
                        headers=server.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert ReportOut.model_validate(body).model_dump(by_alias=True) == body
    assert (body["since"], body["until"]) == ("2026-11-24T11:00:00Z", "2026-11-24T13:00:00Z")
    assert [(s["step"], s["sessions"]) for s in body["funnel"]] == [
        ("sessions", 2), ("checkout", 2), ("payment", 2), ("success", 1)]
    assert body["paymentErrors"] == [{"errorCode": "card_declined", "errors": 2,
                                      "checkouts": 2, "amountAtStake": "40.00",
                                      "amountRecovered": "20.00"}]
    assert body["retries"]["succeededAfterRetry"] == 1
    assert body["abandonment"] == [{"pageType": "product", "pageIdentifier": "mug",
                                    "sessions": 1, "share": 1.0}]
    assert body["timeOnPage"]["byPageType"][0]["pageType"] == "product"
    assert body["customEvents"] == [{"name": "review_written", "events": 1, "sessions": 1}]

    default = client.get(f"{P}/report", headers=server.auth).json()
    now = datetime(2026, 11, 24, 12, 1, 20, tzinfo=UTC)
    assert default["until"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    reversed_range = client.get(f"{P}/report", params={"since": "2026-11-24T13:00:00Z",
                                                       "until": "2026-11-24T12:00:00Z"},
                                headers=server.auth)
    assert reversed_range.status_code == 422
    assert reversed_range.json()["detail"].startswith("until: must be after since")
